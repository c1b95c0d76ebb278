import assert from 'node:assert/strict';
import { type FileHandle, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { createTracing, readTraceLog, TraceLogExporter } from '../src/index.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-tracelog-file-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Sampled spans from a real Tracing, `n` of them, their URLs numbered from `from`. */
async function spans(n: number, from = 0): Promise<ReadableSpan[]> {
  const made: ReadableSpan[] = [];
  const collect: SpanExporter = {
    export(batch, done) {
      made.push(...batch);
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: async () => {},
  };
  const tracing = createTracing({ service: 'file', exporters: [collect] });
  for (let i = 0; i < n; i++) tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: `http://a/${from + i}` }).end(200);
  await tracing.shutdown();
  return made;
}

const exported = (e: TraceLogExporter, batch: ReadableSpan[]) =>
  new Promise<ExportResult>((resolve) => {
    e.export(batch, resolve);
  });

/** A file handle whose `nth` write writes half of what it is given, and whose next write fails as a full disk would. */
function shortWriteAt(file: FileHandle, nth: number): FileHandle {
  let writes = 0;
  let failNext = false;
  const write = async (buffer: Buffer, offset: number, length: number) => {
    writes++;
    if (failNext) {
      failNext = false;
      throw Object.assign(new Error('EFBIG: file too large, write'), { code: 'EFBIG' });
    }
    if (writes === nth) {
      failNext = true;
      return file.write(buffer, offset, Math.floor(length / 2));
    }
    return file.write(buffer, offset, length);
  };
  return new Proxy(file, {
    get(target, key) {
      if (key === 'write') return write;
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('trace log file', () => {
  for (const format of ['json', 'proto'] as const) {
    it(`a short write, then a failed one, fails that batch and leaves the file readable (${format}): the lines before and after read back whole`, async () => {
      const path = join(dir, `torn.${format}`);
      const e = new TraceLogExporter({ path, format }, { open: async (p, flags) => shortWriteAt(await open(p, flags), 2) });
      assert.equal((await exported(e, await spans(3, 0))).code, ExportResultCode.SUCCESS);
      const size = (await stat(path)).size;
      const torn = await exported(e, await spans(3, 100));
      assert.equal(torn.code, ExportResultCode.FAILED);
      assert.equal(torn.error?.message, 'EFBIG: file too large, write');
      assert.equal((await stat(path)).size, size, 'cut back to the last whole batch');
      assert.equal((await exported(e, await spans(3, 200))).code, ExportResultCode.SUCCESS);
      await e.shutdown();
      const read = await readTraceLog([path]);
      assert.equal(read.badLines, 0);
      assert.deepEqual(
        read.spans.map((s) => s.attributes['url.full']),
        ['http://a/0', 'http://a/1', 'http://a/2', 'http://a/200', 'http://a/201', 'http://a/202'],
      );
    });
  }

  it('a short write followed by a good one writes the rest: the batch whole, exported', async () => {
    const path = join(dir, 'short.jsonl');
    const writes: number[] = [];
    const e = new TraceLogExporter(
      { path },
      {
        open: async (p, flags) => {
          const file = await open(p, flags);
          return new Proxy(file, {
            get(target, key) {
              if (key === 'write')
                return (buffer: Buffer, offset: number, length: number) => {
                  writes.push(length);
                  return target.write(buffer, offset, Math.min(length, 100));
                };
              const value = Reflect.get(target, key) as unknown;
              return typeof value === 'function' ? value.bind(target) : value;
            },
          });
        },
      },
    );
    assert.equal((await exported(e, await spans(2))).code, ExportResultCode.SUCCESS);
    await e.shutdown();
    assert.ok(writes.length > 1, 'written in several writes');
    const read = await readTraceLog([path]);
    assert.equal(read.badLines, 0);
    assert.equal(read.spans.length, 2);
  });
});
