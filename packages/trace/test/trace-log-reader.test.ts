// A trace log is input: a span whose fields are not of OTLP's types makes its line a bad
// one (counted), never a TypeError in what reads the spans (a status message that was a
// number stopped `meshlet explain` for the whole trace).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { readTraceLog } from '../src/index.js';

const span = (fields: Record<string, unknown>) =>
  JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'orders' } }] },
        scopeSpans: [
          {
            spans: [
              {
                traceId: '0af7651916cd43dd8448eb211c80319c',
                spanId: 'b7ad6b7169203331',
                name: 'GET /x',
                kind: 2,
                startTimeUnixNano: '1000000',
                endTimeUnixNano: '3000000',
                status: { code: 2, message: 'refused' },
                attributes: [],
                ...fields,
              },
            ],
          },
        ],
      },
    ],
  });

it('a line whose span has a field of another type is a bad line; the good lines are read', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'trace-reader-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'trace.log');
  const lines = [
    span({}),
    span({ status: { code: 2, message: 12345 } }),
    span({ name: 7 }),
    span({ traceId: { hex: 'x' } }),
    span({ kind: '2' }),
    span({ status: { code: 'ERROR' } }),
    span({ spanId: 'c7ad6b7169203331', status: undefined }),
  ];
  await writeFile(path, `${lines.join('\n')}\n`);
  const { spans, badLines } = await readTraceLog([path]);
  assert.equal(badLines, 5);
  assert.deepEqual(
    spans.map((s) => [s.spanId, s.statusCode, s.statusMessage]),
    [
      ['b7ad6b7169203331', 2, 'refused'],
      ['c7ad6b7169203331', 0, undefined],
    ],
  );
});
