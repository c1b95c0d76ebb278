import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { type FileHandle, lstat, mkdtemp, open, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
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

  it('refuses a FIFO, with no reader or with one, at once: the batch failed naming tracing.log.path, nothing blocked', async () => {
    const path = join(dir, 'spans.fifo');
    execFileSync('mkfifo', [path]);
    const e = new TraceLogExporter({ path });
    const alone = await exported(e, await spans(1));
    assert.equal(alone.code, ExportResultCode.FAILED);
    assert.match(alone.error?.message ?? '', /^tracing\.log\.path: ".*spans\.fifo" is a FIFO or socket without a reader/);
    assert.equal((alone.error as { code?: string }).code, 'MESHLET_TRACE_EXPORT_FAILED');
    const reader = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const read = await exported(e, await spans(1));
      assert.equal(read.code, ExportResultCode.FAILED);
      assert.match(read.error?.message ?? '', /is not a regular file/);
    } finally {
      await reader.close();
    }
    await e.shutdown();
  });

  it('refuses a symbolic link as the path, and leaves the link and its file as they were', async () => {
    const target = join(dir, 'target.jsonl');
    await writeFile(target, 'kept\n');
    const path = join(dir, 'link.jsonl');
    await symlink(target, path);
    const e = new TraceLogExporter({ path, maxBytes: 1024 });
    for (let i = 0; i < 3; i++) {
      const r = await exported(e, await spans(5));
      assert.equal(r.code, ExportResultCode.FAILED);
      assert.match(r.error?.message ?? '', /is a symbolic link/);
    }
    await e.shutdown();
    assert.ok((await lstat(path)).isSymbolicLink());
    assert.equal(await readFile(target, 'utf8'), 'kept\n');
  });

  it('writes to a new file at the path once the file is removed or moved away under it, not to the old one', async () => {
    const path = join(dir, 'moved.jsonl');
    const e = new TraceLogExporter({ path });
    assert.equal((await exported(e, await spans(2, 0))).code, ExportResultCode.SUCCESS);
    await rename(path, `${path}.rotated`);
    assert.equal((await exported(e, await spans(2, 10))).code, ExportResultCode.SUCCESS);
    await rm(path);
    assert.equal((await exported(e, await spans(2, 20))).code, ExportResultCode.SUCCESS);
    assert.equal((await exported(e, await spans(2, 30))).code, ExportResultCode.SUCCESS);
    await e.shutdown();
    const urls = async (p: string) => (await readTraceLog([p])).spans.map((s) => s.attributes['url.full']);
    assert.deepEqual(await urls(`${path}.rotated`), ['http://a/0', 'http://a/1']);
    assert.deepEqual(await urls(path), ['http://a/20', 'http://a/21', 'http://a/30', 'http://a/31']);
  });
});
