// What a Node team writes instead of a mesh (BENCH.md, "peers"): global fetch wrapped in
// a resilience library, with the round robin over the service's instances and the tag
// header written by hand. The same work the governed client's rules ask for, as far as
// each library goes: one breaker for the service, a 5 s timeout per attempt, one retry
// to the next instance on an error or a 5xx; the request's tags read from the current
// request context and sent as `x-meshlet-tags`. No tag routing (the 20/80 rule), no
// instance breakers, no caller identity, no tracing: the peers do less than the mesh.
import { currentContext, encodeTags, TAG_HEADER } from '@meshlet/core';
import { ConsecutiveBreaker, ConstantBackoff, circuitBreaker, handleAll, retry, TimeoutStrategy, timeout, wrap } from 'cockatiel';
import CircuitBreaker from 'opossum';

/** One call (GET the path, body read; as the governed clients' `call`), and the client's teardown. */
export interface PeerClient {
  readonly call: () => Promise<unknown>;
  close(): void;
}

class UpstreamStatusError extends Error {
  constructor(readonly status: number) {
    super(`upstream answered ${status}`);
  }
}

/** Round robin over the instances, by hand. */
function roundRobin(instances: readonly string[]): () => string {
  let next = 0;
  return () => {
    const i = next;
    next = (next + 1) % instances.length;
    return instances[i] as string;
  };
}

/** The tag header from the request being served, by hand. */
function tagHeaders(): Record<string, string> {
  const { header } = encodeTags(currentContext().tags);
  return header === '' ? {} : { [TAG_HEADER]: header };
}

/**
 * One attempt, its body read inside it: cockatiel's timeout aborts its signal once the
 * policy returns, which would cut a body read after it. A 5xx is a failure the policies see.
 */
async function attempt(url: string, signal?: AbortSignal): Promise<ArrayBuffer> {
  const res = await globalThis.fetch(url, { headers: tagHeaders(), ...(signal ? { signal } : {}) });
  if (res.status >= 500) {
    await res.body?.cancel();
    throw new UpstreamStatusError(res.status);
  }
  return res.arrayBuffer();
}

/** cockatiel 4 + fetch: retry(1) around a consecutive-failure breaker around a 5 s cooperative timeout. */
export function cockatielFetch(instances: readonly string[], path: string): PeerClient {
  const pick = roundRobin(instances);
  const policy = wrap(
    retry(handleAll, { maxAttempts: 1, backoff: new ConstantBackoff(0) }),
    circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) }),
    timeout(5_000, TimeoutStrategy.Cooperative),
  );
  return {
    call: () => policy.execute(({ signal }) => attempt(`${pick()}${path}`, signal)),
    close() {},
  };
}

/** opossum 10 + fetch: one service breaker (5 s timeout, 50% errors) and one retry to the next instance by hand. */
export function opossumFetch(instances: readonly string[], path: string): PeerClient {
  const pick = roundRobin(instances);
  const breaker = new CircuitBreaker((url: string) => attempt(url), { timeout: 5_000, errorThresholdPercentage: 50, resetTimeout: 10_000 });
  return {
    async call() {
      try {
        return await breaker.fire(`${pick()}${path}`);
      } catch {
        return breaker.fire(`${pick()}${path}`);
      }
    },
    close: () => breaker.shutdown(),
  };
}
