// Property-based tests over rule documents of every kind (issue 16): whatever an operator
// writes, validate and apply answer with a document or a coded refusal, a refusal changes
// nothing in force, and an accepted document stays within the bounds that bound the work
// of evaluating it. Fixed seeds and bounded runs: the same cases on every machine.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  checkRegex,
  InMemoryKvStore,
  InMemoryRegistry,
  MemoryLogger,
  REGEX_MAX_PROGRAM,
  RULE_DOCUMENT_LIMITS,
  RuleValidationError,
} from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import fc from 'fast-check';
import { createMesh, type Mesh } from '../src/index.js';

const SEED = 16;

/** A valid section of every kind: the starting points that mutations break. */
const SEEDS: Record<string, unknown> = {
  route: {
    rules: [
      {
        name: 'chrome-to-v1.21',
        when: [
          { tag: 'ua.family', op: 'equals', value: 'Chrome' },
          { tag: 'uid', op: 'regex', pattern: '^u-[0-9]{4}$' },
        ],
        destinations: [
          { group: { version: '1.21.0' }, weight: 20 },
          { group: { version: '1.20.0' }, weight: 80 },
        ],
      },
    ],
    default: [{ group: { version: '1.20.0' }, weight: 100 }],
  },
  breaker: {
    rules: [
      { level: 'service', failureRateThreshold: 60, fallback: { status: 503, body: { error: 'busy', retry: [1, 2] } } },
      { level: 'api', apis: [{ method: 'GET', path: '/users/{id}' }], consecutiveFailures: 3, fallback: { status: 200, body: 'cached' } },
      { level: 'instance', consecutiveFailures: 5, maxEjectionPercent: 34 },
    ],
    timeoutMs: 2000,
    retry: { maxRetries: 1 },
  },
  ratelimit: {
    rules: [
      { name: 'service', rate: 100 },
      { name: 'orders', api: { method: 'POST', path: '/orders/{id}' }, rate: 10, unit: 'minute', burst: 5 },
    ],
  },
  auth: {
    default: 'allow',
    rules: [{ name: 'ops', action: 'allow', services: ['ops'], apis: [{ path: '/admin/**' }] }],
  },
  fault: {
    rules: [{ name: 'broken-chrome', when: [{ tag: 'ua.family', op: 'regex', pattern: 'Chrom(e|ium)' }], percentage: 0.5, abort: 503 }],
  },
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Step = (string | number)[];

/** Every path to a value inside `v`. */
function paths(v: Json, at: Step = [], out: Step[] = []): Step[] {
  out.push(at);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) paths(v[i] as Json, [...at, i], out);
  } else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  return out;
}

/** `doc` with the value at `path` passed through `change` (undefined deletes it). */
function mutate(doc: Json, path: Step, change: (old: Json) => Json | undefined): Json {
  if (path.length === 0) return change(doc) ?? null;
  const [head, ...rest] = path as [string | number, ...Step];
  const copy: Json = Array.isArray(doc) ? [...doc] : { ...(doc as Record<string, Json>) };
  const container = copy as unknown as Record<string | number, Json>;
  const next = rest.length === 0 ? change(container[head] as Json) : mutate(container[head] as Json, rest, change);
  if (next === undefined) {
    if (Array.isArray(copy)) copy.splice(head as number, 1);
    else delete container[head];
  } else container[head] = next;
  return copy;
}

const NEST = '\u0000nest:';
const NESTED = /"\\u0000nest:[^"\\]*(?:\\.[^"\\]*)*"/g;

/** The document's text, with each nesting marker written out as `[[[…]]]` around its value. */
function render(doc: Json): string {
  let text = JSON.stringify(doc);
  while (text.includes(`"\\u0000nest:`)) {
    text = text.replace(NESTED, (literal) => {
      const [n, inner] = (JSON.parse(literal) as string).slice(NEST.length).split(/:(.*)/s) as [string, string];
      return `${'['.repeat(Number(n))}${inner}${']'.repeat(Number(n))}`;
    });
  }
  return text;
}

/** How an operator's edit can go wrong. */
const mutation: fc.Arbitrary<(old: Json) => Json | undefined> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => () => v as Json),
  fc.constant(() => undefined),
  // Nesting: the 5,000-level fallback body, and every depth on the way (written
  // into the text by `render`: the test's own JSON.stringify need not recurse that deep).
  fc.integer({ min: 1, max: 6000 }).map((n) => (old: Json) => `${NEST}${n}:${JSON.stringify(old)}`),
  fc.integer({ min: 1, max: 1500 }).map((n) => (old: Json) => new Array(n).fill(old)),
  fc.integer({ min: 0, max: 70_000 }).map((n) => () => 'x'.repeat(n)),
  fc
    .constantFrom<Json>(-1, 0, 0.5, 1e308, -1e308, '', '5xx', '.*.*.*.*.*.*!', '^.*.*.*.*=$', '(a)\\1', '(?=a)', '\\u0041', 'a{1000}{1000}')
    .map((v) => () => v),
  fc
    .string({ maxLength: 12 })
    .map((k) => (old: Json) => (old !== null && typeof old === 'object' && !Array.isArray(old) ? { ...old, [k]: 1 } : old)),
);

/** A document of one or more kinds, then a few mutations anywhere in it (the service name too). */
const mutatedDocument = fc
  .tuple(
    fc.subarray(Object.keys(SEEDS), { minLength: 1 }),
    fc.array(fc.tuple(fc.nat(), mutation), { maxLength: 3 }),
    fc.constantFrom('route', 'rout', 'breakers', 'Route', 'limits', 'description'),
  )
  .map(([kinds, edits, extra]) => {
    let doc: Json = { service: 'orders', ...Object.fromEntries(kinds.map((k) => [k, SEEDS[k] as Json])) };
    if (extra !== 'route' && extra !== 'description' && edits.length > 2) doc = { ...(doc as object), [extra]: {} } as Json;
    for (const [where, change] of edits) {
      const all = paths(doc);
      doc = mutate(doc, all[where % all.length] as Step, change);
    }
    return render(doc);
  });

/** Arbitrary JSON text, and text that is not JSON. */
const arbitraryText = fc.oneof(
  fc.json({ maxDepth: 4 }),
  fc.string({ maxLength: 200 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ service: 'orders', route: v })),
);

/** Walks an accepted document: values and depth (the work its parse did), and its regex patterns. */
function measure(text: string): { nodes: number; depth: number; patterns: string[] } {
  let nodes = 0;
  let depth = 0;
  const patterns: string[] = [];
  const walk = (v: unknown, d: number): void => {
    nodes++;
    if (v === null || typeof v !== 'object') return;
    depth = Math.max(depth, d + 1);
    const o = v as Record<string, unknown>;
    if (o.op === 'regex' && typeof o.pattern === 'string') patterns.push(o.pattern);
    for (const x of Object.values(o)) walk(x, d + 1);
  };
  walk(JSON.parse(text), 0);
  return { nodes, depth, patterns };
}

describe('rule documents under fuzzing (fast-check, fixed seed)', () => {
  const logger = new MemoryLogger();
  let mesh: Mesh;
  let upstream: Awaited<ReturnType<typeof listen>>;

  before(async () => {
    // The mesh reads `orders`' rules for its own inbound path (ratelimit, auth) and as a
    // destination (route, breaker, fault): every kind's listener compiles what is applied.
    // The upstream is this mesh's own inbound pipeline, so that ratelimit and auth rules run on every call too.
    let inbound: Parameters<typeof listen>[0] = (_req, res) => res.end('not yet');
    upstream = await listen((req, res) => inbound(req, res));
    const registry = new InMemoryRegistry();
    await registry.register({
      id: 'orders-1',
      service: 'orders',
      address: '127.0.0.1',
      port: upstream.port,
      tags: [],
      metadata: { version: '1.20.0' },
      health: 'passing',
    });
    mesh = createMesh({ service: 'orders', registry, rules: new InMemoryKvStore(), logger });
    inbound = mesh.httpHandler((_req, res) => res.end('ok'));
    // The first call follows `orders` as a destination: router, breakers and faults listen from then on.
    assert.equal((await mesh.fetch('http://orders/')).status, 200);
  });
  after(async () => {
    await mesh.close();
    await upstream.close();
  });

  /** validate → a document or a coded refusal; apply → the same answer; a refusal changes nothing. */
  const calls = { answered: 0, refused: 0 };
  const seen = { accepted: 0, refused: 0, limits: new Map<string, number>(), sections: new Set<string>() };
  async function check(text: string): Promise<void> {
    let valid: boolean;
    try {
      mesh.rules.validate(text);
      valid = true;
    } catch (err) {
      assert.ok(err instanceof RuleValidationError, `uncoded throw from validate: ${String(err)}`);
      assert.equal(err.code, 'MESHLET_BAD_RULE');
      assert.equal(typeof err.path, 'string');
      valid = false;
      seen.refused++;
      const why = err.limit ?? err.path.split(/[.[]/)[0] ?? '';
      seen.limits.set(why, (seen.limits.get(why) ?? 0) + 1);
    }
    const before = await mesh.rules.current('orders');
    const failedBefore = logger.entries.filter((e) => e.fields?.code === 'MESHLET_RULE_LISTENER_FAILED').length;
    try {
      await mesh.rules.apply(text, { author: 'fuzz' });
      assert.ok(valid, 'apply accepted what validate refused');
    } catch (err) {
      assert.ok(err instanceof RuleValidationError, `uncoded throw from apply: ${String(err)}`);
      assert.ok(!valid, `apply refused what validate accepted: ${err.message}`);
      assert.deepEqual(await mesh.rules.current('orders'), before, 'a refusal wrote nothing');
      return;
    }
    seen.accepted++;
    for (const k of Object.keys(JSON.parse(text) as object)) seen.sections.add(k);
    const status = await mesh.rulesInForce('orders');
    assert.equal(status.revision, (await mesh.rules.current('orders')).revision, 'the accepted document is in force');
    assert.equal(
      logger.entries.filter((e) => e.fields?.code === 'MESHLET_RULE_LISTENER_FAILED').length,
      failedBefore,
      'nothing in an accepted document throws where it is compiled',
    );
    // …nor when a call goes through it: a response (403, 429, a fallback… all fine) or a coded error.
    try {
      const res = await mesh.fetch('http://orders/users/7', { signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      calls.answered++;
    } catch (err) {
      assert.equal(typeof (err as { code?: unknown }).code, 'string', `uncoded throw from a call: ${String(err)}`);
      calls.refused++;
    }
    // Bounded work: what was accepted is within the bounds, and every regex is linear with a bounded program.
    const m = measure(text);
    assert.ok(text.length <= RULE_DOCUMENT_LIMITS.maxChars);
    assert.ok(m.nodes <= RULE_DOCUMENT_LIMITS.maxNodes, `${m.nodes} values`);
    assert.ok(m.depth <= RULE_DOCUMENT_LIMITS.maxDepth, `depth ${m.depth}`);
    for (const p of m.patterns) assert.ok(checkRegex(p, 'p').programSize <= REGEX_MAX_PROGRAM, p);
  }

  it('mutated documents of every kind', async () => {
    await fc.assert(fc.asyncProperty(mutatedDocument, check), { seed: SEED, numRuns: 600 });
    // Not vacuous: both answers, every kind accepted, and refusals by bound and by section.
    console.log(
      `rule fuzz: accepted ${seen.accepted}, refused ${seen.refused}: ${JSON.stringify([...seen.limits])}; calls answered ${calls.answered}, refused ${calls.refused}`,
    );
    assert.ok(seen.accepted >= 30 && seen.refused >= 30, `accepted ${seen.accepted}, refused ${seen.refused}`);
    for (const kind of Object.keys(SEEDS)) assert.ok(seen.sections.has(kind), `no ${kind} section was accepted`);
    for (const limit of ['depth', 'array', 'string']) assert.ok(seen.limits.has(limit), `no refusal by ${limit}`);
  });

  it('arbitrary text', async () => {
    await fc.assert(fc.asyncProperty(arbitraryText, check), { seed: SEED, numRuns: 500 });
  });

  it('regex conditions: coded refusal or a linear matcher that answers any tag value', () => {
    const token = fc.constantFrom(
      'a',
      'b',
      '.',
      '*',
      '+',
      '?',
      '|',
      '(',
      ')',
      '[a-z]',
      '{2,5}',
      '{1000}',
      '\\d',
      '\\w',
      '^',
      '$',
      '(?:',
      '(?=',
      '\\1',
      '\\u',
      '(?i)',
    );
    const pattern = fc.array(token, { maxLength: 24 }).map((t) => t.join(''));
    const value = fc.oneof(
      fc.string({ maxLength: 512 }),
      fc.nat({ max: 512 }).map((n) => 'a'.repeat(n)),
    );
    fc.assert(
      fc.property(pattern, fc.array(value, { maxLength: 4 }), (p, values) => {
        let re: ReturnType<typeof checkRegex>;
        try {
          re = checkRegex(p, 'route.rules[0].when[0].pattern');
        } catch (err) {
          assert.ok(err instanceof RuleValidationError, `uncoded: ${String(err)}`);
          assert.equal(err.path, 'route.rules[0].when[0].pattern');
          return;
        }
        assert.ok(re.programSize <= REGEX_MAX_PROGRAM);
        for (const v of values) assert.equal(typeof re.test(v), 'boolean');
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });
});
