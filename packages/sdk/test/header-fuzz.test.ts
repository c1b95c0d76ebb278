// Property tests (fast-check, fixed seeds, bounded runs) over what a client or a peer sends:
// tag headers in every dialect, traceparent / tracestate / B3, the caller and identity
// headers. Invariants: nothing throws, nothing answers 500, the work and the log lines of
// a request are bounded by its input (counted, not timed).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { checkIdentity, IDENTITY_HEADER, meshKey, signIdentity } from '@meshlet/auth';
import {
  CALLER_HEADER,
  createContext,
  InMemoryKvStore,
  InMemoryRegistry,
  type LogFields,
  type Logger,
  ManualClock,
  PER_REQUEST_CODES,
  runWithContext,
  TAG_HEADER,
  TagLimits,
} from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import fc from 'fast-check';
import { createMesh, type Mesh, userAgentFamily } from '../src/index.js';

const SEED = 0x16_16;
const HEADER_NAMES = [
  TAG_HEADER,
  'x-meshlet-tags-once',
  'tsf-tags',
  'tsf-metadata',
  'sct-custom-metadata',
  'sct-custom-disposable-metadata',
  'x-polaris-metadata-transitive-user-tier',
  'x-sct-metadata-transitive-lane',
  CALLER_HEADER,
  IDENTITY_HEADER,
  'traceparent',
  'tracestate',
  'baggage',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-sampled',
  'user-agent',
] as const;

/** Lines written, by code; and every call made into the logger. */
class CountingSink implements Logger {
  readonly coded: string[] = [];
  lines = 0;
  #write(_m: string, f?: LogFields) {
    this.lines++;
    if (typeof f?.code === 'string') this.coded.push(f.code);
  }
  debug() {}
  info(m: string, f?: LogFields) {
    this.#write(m, f);
  }
  warn(m: string, f?: LogFields) {
    this.#write(m, f);
  }
  error(m: string, f?: LogFields) {
    this.#write(m, f);
  }
}

const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const printable = (maxLength: number) =>
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength });
const anyText = (maxLength: number) => fc.string({ unit: 'binary', maxLength });
const tagKey = fc.oneof(printable(12), fc.constantFrom('ua.family', 'user-tier', 'lane', 'source.service.name', ''), anyText(8));
const tagList = fc
  .array(fc.tuple(tagKey, fc.oneof(printable(16), anyText(8))), { maxLength: 80 })
  .map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join(','));

/** Values shaped like each header, broken in places, and plain noise; sometimes over the bounds. */
const valueFor = (name: string, validToken: string) => {
  const noise = fc.oneof(
    printable(64),
    anyText(32),
    fc.constant(''),
    fc.tuple(fc.nat(300), printable(4)).map(([n, p]) => `a${p}=1,`.repeat(1400 + n)),
  );
  switch (name) {
    case TAG_HEADER:
    case 'x-meshlet-tags-once':
    case CALLER_HEADER:
      return fc.oneof(tagList, noise);
    case 'tsf-tags':
    case 'tsf-metadata':
    case 'sct-custom-metadata':
    case 'sct-custom-disposable-metadata':
      return fc.oneof(
        fc
          .array(fc.record({ k: printable(10), v: printable(10), f: fc.array(fc.constantFrom('0', '1', '2', 'x')) }), { maxLength: 70 })
          .map((a) => JSON.stringify(a)),
        fc.dictionary(printable(10), fc.oneof(printable(10), fc.integer())).map((o) => JSON.stringify(o)),
        fc.json({ maxDepth: 4 }),
        noise,
      );
    case IDENTITY_HEADER:
      return fc.oneof(
        fc.constant(validToken),
        fc.tuple(fc.nat(validToken.length - 1), printable(1)).map(([i, c]) => validToken.slice(0, i) + c + validToken.slice(i + 1)),
        fc.array(printable(12), { minLength: 9, maxLength: 11 }).map((f) => f.join('|')),
        noise,
      );
    case 'traceparent':
      return fc.oneof(
        fc.tuple(hex(2), hex(32), hex(16), hex(2)).map((p) => p.join('-')),
        fc.tuple(hex(32), hex(16)).map(([t, s]) => `00-${t}-${s}-01`),
        noise,
      );
    case 'b3':
      return fc.oneof(
        fc.tuple(hex(32), hex(16), fc.constantFrom('0', '1', 'd', '')).map((p) => p.filter(Boolean).join('-')),
        noise,
      );
    case 'x-b3-traceid':
      return fc.oneof(hex(32), hex(16), noise);
    case 'x-b3-spanid':
      return fc.oneof(hex(16), noise);
    default:
      return noise;
  }
};

const headersArb = (validToken: string) =>
  fc
    .subarray([...HEADER_NAMES], { minLength: 1 })
    .chain((names) =>
      fc
        .tuple(...names.map((n) => valueFor(n, validToken)))
        .map((values) => Object.fromEntries(names.map((n, i) => [n, values[i] as string]))),
    );

const inputBytes = (headers: Record<string, string>) => Object.values(headers).reduce((n, v) => n + v.length, 0);

describe('fuzzing what arrives in headers', () => {
  const clock = new ManualClock(Date.now());
  const key = meshKey('k1', randomBytes(32).toString('base64'));
  const sinks = { open: new CountingSink(), auth: new CountingSink() };
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  let open: Mesh;
  let guarded: Mesh;
  let server: TestServer;
  let validToken = '';
  before(async () => {
    const tagsFromHeaders = [{ header: 'user-agent', tag: 'ua.family', transform: userAgentFamily }];
    const tracing = { sampleRatio: 1, propagation: { emit: ['w3c', 'b3', 'b3multi'] as const } };
    open = createMesh({ service: 'fuzz-open', registry, rules, clock, logger: sinks.open, tagsFromHeaders, tracing });
    guarded = createMesh({
      service: 'fuzz-auth',
      registry,
      rules,
      clock,
      logger: sinks.auth,
      tagsFromHeaders,
      tracing,
      auth: { keys: [key] },
    });
    validToken = signIdentity({ service: 'peer', namespace: 'default', instance: 'peer-1' }, key, clock, { audience: 'fuzz-auth' });
    server = await listen(open.httpHandler((_req, res) => res.end('ok')));
  });
  after(async () => {
    await server.close();
    await open.close();
    await guarded.close();
  });

  it('in process: no throw, tags within bounds, coded entries linear in the input, log lines bounded by the per-request codes', () => {
    let verified = 0;
    fc.assert(
      fc.property(
        fc.constant(null).chain(() => headersArb(validToken)),
        (headers) => {
          for (const mesh of [open, guarded]) {
            const counts = (mesh.logger as unknown as { counts: ReadonlyMap<string, number> }).counts;
            const before = [...counts.values()].reduce((a, b) => a + b, 0);
            // A request's head alone (RequestHead), as the gRPC server hands its metadata in.
            const ctx = mesh.contextOf({ headers, method: 'GET', url: '/fuzz?q=1' });
            assert.ok(ctx.tags.size <= TagLimits.maxTags + 4, `${ctx.tags.size} tags`);
            for (const [k, v] of ctx.tags) assert.ok(!/[\r\n\0]/.test(k + v), 'a control character reached a tag');
            const span = mesh.tracing?.startServerSpan(headers, 'GET', undefined, { target: '/fuzz' });
            span?.end(200);
            const after = [...counts.values()].reduce((a, b) => a + b, 0);
            // Work per request: at most one coded condition per two bytes of input, plus a constant.
            assert.ok(after - before <= inputBytes(headers) / 2 + 16, `${after - before} conditions for ${inputBytes(headers)} bytes`);
            if (mesh === guarded && ctx.caller.service === 'peer') {
              verified++;
              assert.equal(headers[IDENTITY_HEADER], validToken, 'only the token as signed verifies');
            }
          }
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
    assert.ok(verified > 0, 'the valid token was tried');
    for (const sink of [sinks.open, sinks.auth]) {
      const fromHeaders = sink.coded.filter((c) => PER_REQUEST_CODES.includes(c));
      // The clock stands still: one line per per-request code, however many requests.
      assert.ok(fromHeaders.length <= PER_REQUEST_CODES.length, `${fromHeaders.length} lines: ${fromHeaders.join(', ')}`);
    }
  });

  it('the identity check never throws, and a changed token never verifies', () => {
    fc.assert(
      fc.property(fc.oneof(anyText(1100), valueFor(IDENTITY_HEADER, validToken)), (header) => {
        const result = checkIdentity(header, [key], clock, { audience: 'fuzz-auth' });
        if (result.ok) assert.equal(header, validToken);
      }),
      { seed: SEED + 1, numRuns: 2000 },
    );
  });

  it('outbound: any tags the app sets, in every dialect, never throw and never put a control character in a header', async () => {
    const sent: Headers[] = [];
    const caller = createMesh({
      service: 'fuzz-caller',
      registry,
      rules,
      clock,
      logger: new CountingSink(),
      dialects: { emit: ['meshlet', 'tsf', 'sct', 'polaris'] },
      fetch: async (_input, init) => {
        sent.push(new Headers(init?.headers));
        return new Response('ok');
      },
    });
    await open.register({ port: server.port });
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(tagKey, fc.oneof(printable(40), anyText(20))), { maxLength: 90 }), async (tags) => {
          const res = await runWithContext(createContext({ tags }), () => caller.fetch('http://fuzz-open/x'));
          assert.equal(res.status, 200);
          const headers = sent.pop();
          for (const [k, v] of headers ?? []) assert.ok(!/[\r\n\0]/.test(v), `${k} carries a control character`);
        }),
        { seed: SEED + 2, numRuns: 300 },
      );
    } finally {
      await caller.close();
    }
  });

  it('over real HTTP: whatever printable headers arrive, the app answers, never a 500', async () => {
    await fc.assert(
      fc.asyncProperty(headersArb(validToken), async (headers) => {
        const sendable: Record<string, string> = {};
        for (const [k, v] of Object.entries(headers)) if (/^[\x20-\x7e]*$/.test(v)) sendable[k] = v;
        const res = await globalThis.fetch(`http://127.0.0.1:${server.port}/fuzz`, { headers: sendable });
        // 431: node:http's own limit on the header block (16 KiB), before Meshlet sees it.
        assert.ok(res.status === 200 || (res.status === 431 && inputBytes(sendable) > 16_000), `status ${res.status}`);
        await res.text();
      }),
      { seed: SEED + 3, numRuns: 150 },
    );
  });
});
