import type { RequestListener } from 'node:http';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import type { ServerSpan, Tracing } from '../src/index.js';

export { listen } from '@meshlet/core/testing';

/**
 * What the SDK's inbound middleware will do: a server span per request, ended when the
 * response finishes, with the handler run inside it.
 */
export function traced(
  tracing: Tracing,
  route: string,
  handler: (span: ServerSpan) => Promise<{ status: number; body: string }>,
): RequestListener {
  return (req, res) => {
    const span = tracing.startServerSpan(req.headers, req.method ?? 'GET', route, { target: req.url ?? '/' });
    res.on('finish', () => span.end(res.statusCode));
    span
      .run(() => handler(span))
      .then(
        ({ status, body }) => {
          res.statusCode = status;
          res.end(body);
        },
        (err: unknown) => {
          res.statusCode = 500;
          res.end(String(err));
        },
      );
  };
}

/**
 * What governed fetch will do per attempt: a client span child of the active one, its
 * headers injected, ended with the status.
 */
export async function tracedFetch(tracing: Tracing, service: string, url: string, init: { attempt?: number } = {}): Promise<Response> {
  const span = tracing.startClientSpan(undefined, { method: 'GET', url, service, ...(init.attempt ? { attempt: init.attempt } : {}) });
  const headers = new Headers();
  span.inject(headers);
  try {
    const res = await fetch(url, { headers });
    span.end(res.status);
    return res;
  } catch (error) {
    span.end({ error });
    throw error;
  }
}

export function memoryExporter(): InMemorySpanExporter {
  return new InMemorySpanExporter();
}

export const byName = (spans: readonly ReadableSpan[], name: string): ReadableSpan => {
  const s = spans.find((x) => x.name === name);
  if (!s) throw new Error(`no span named ${name} in ${spans.map((x) => x.name).join(', ')}`);
  return s;
};
