// A Consul agent's KV as a fetch, for tests of ConsulKvStore without Consul. It answers what the
// store asks: the default shared query (a `?keys=true` list, then `/v1/txn` transactions of
// `check-index` and `get`), the `?recurse=true` query, a key's read, and the probe's leader read.
import type { KvPair } from '../src/kv-prefix-query.js';

export interface FakeRequest {
  /** From 0, in the order made. */
  readonly n: number;
  readonly method: string;
  readonly url: string;
  /** The path's key (decoded) for a KV request, else undefined. */
  readonly key: string | undefined;
  readonly params: URLSearchParams;
  /** The request's body (a transaction's operations), if any. */
  readonly body: string | undefined;
}

export const json = (body: unknown, index?: number | string, status = 200) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...(index === undefined ? {} : { 'x-consul-index': String(index) }) },
  });

/**
 * Answers from `pairs` at index their highest ModifyIndex: a blocking query at that index or
 * past it waits, as Consul's does, until its caller aborts it (or `drop()`). `pairs` is read
 * at each request: a test may change it (then `drop()` the blocked queries, as an agent's
 * restart does). `answer` may answer a request itself first (a bad answer, a moved index, a
 * refused connection; a promise holds the request until it settles), else undefined.
 */
export function fakeConsulKv(pairs: readonly KvPair[], answer?: (req: FakeRequest) => Response | Promise<Response> | undefined) {
  const requests: FakeRequest[] = [];
  const waiting: { n: number; resolve: () => void }[] = [];
  const blocked = new Set<(err: Error) => void>();
  let index = 1;
  let byKey = new Map<string, KvPair>();
  /** A blocking query with nothing new: no answer until its caller aborts it, or drop(). */
  const block = (signal: AbortSignal | null | undefined) =>
    new Promise<Response>((_resolve, reject) => {
      const end = (err: Error) => {
        blocked.delete(end);
        reject(err);
      };
      blocked.add(end);
      signal?.addEventListener('abort', () => end(signal.reason as Error), { once: true });
    });
  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    index = Math.max(1, ...pairs.map((p) => p.ModifyIndex));
    byKey = new Map(pairs.map((p) => [p.Key, p]));
    const url = new URL(String(input));
    const kv = url.pathname.startsWith('/v1/kv/');
    const req: FakeRequest = {
      n: requests.length,
      method: init?.method ?? 'GET',
      url: String(input),
      key: kv ? url.pathname.slice('/v1/kv/'.length).split('/').map(decodeURIComponent).join('/') : undefined,
      params: url.searchParams,
      body: init?.body === undefined || init.body === null ? undefined : String(init.body),
    };
    requests.push(req);
    for (const w of waiting.filter((w) => w.n === requests.length)) w.resolve();
    const given = answer?.(req);
    if (given) return given;
    if (url.pathname === '/v1/status/leader') return json('127.0.0.1:8300');
    if (url.pathname === '/v1/txn') return txn(JSON.parse(String(init?.body)) as { KV: { Verb: string; Key: string; Index?: number } }[]);
    if (req.key === undefined) return new Response('no such endpoint', { status: 404 });
    if (Number(url.searchParams.get('index') ?? 0) >= index) return block(init?.signal);
    const prefix = req.key;
    const under = [...byKey.values()].filter((p) => p.Key.startsWith(prefix)).sort((a, b) => (a.Key < b.Key ? -1 : 1));
    if (url.searchParams.has('keys'))
      return under.length
        ? json(
            under.map((p) => p.Key),
            index,
          )
        : json(null, index, 404);
    if (url.searchParams.has('recurse')) return under.length ? json(under, index) : json(null, index, 404);
    const pair = byKey.get(req.key);
    return pair ? json([pair], index) : json(null, index, 404);
  }) as typeof globalThis.fetch;

  /** A transaction of `check-index` and `get` (the store's reads), answered as Consul does: 409 naming each failed op. */
  function txn(ops: { KV: { Verb: string; Key: string; Index?: number } }[]): Response {
    const results: { KV: KvPair }[] = [];
    const errors: { OpIndex: number; What: string }[] = [];
    for (const [OpIndex, { KV: op }] of ops.entries()) {
      const pair = byKey.get(op.Key);
      if (!pair) errors.push({ OpIndex, What: `key "${op.Key}" doesn't exist` });
      else if (op.Verb === 'check-index' && pair.ModifyIndex !== op.Index)
        errors.push({ OpIndex, What: `current modify index ${pair.ModifyIndex} != ${op.Index}` });
      else if (op.Verb === 'check-index') results.push({ KV: { ...pair, Value: null } });
      else if (op.Verb === 'get') results.push({ KV: pair });
      else errors.push({ OpIndex, What: `verb ${op.Verb} not in this fake` });
    }
    return errors.length ? json({ Results: null, Errors: errors }, index, 409) : json({ Results: results, Errors: null }, index);
  }

  /** Resolves once `n` requests have been made. */
  const made = (n: number) => (requests.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ n, resolve })));
  /** Ends every blocked query as a connection the agent closed does (fetch's TypeError). */
  const drop = () => {
    for (const end of [...blocked]) end(new TypeError('fetch failed'));
  };
  return { fetch, requests, made, drop };
}
