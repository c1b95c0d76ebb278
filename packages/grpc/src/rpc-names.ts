/**
 * Trailer Meshlet's server interceptor sets on a RESOURCE_EXHAUSTED it answered from a rate
 * limit, before the handler ran: the one RESOURCE_EXHAUSTED a client may retry elsewhere.
 */
export const LIMITED_TRAILER = 'x-meshlet-limited';

export interface RpcNames {
  /** `pkg.Service` (`rpc.service`). */
  readonly service: string;
  /** `Method` (`rpc.method`). */
  readonly method: string;
  /** `pkg.Service/Method`, OpenTelemetry's span name for an RPC. */
  readonly spanName: string;
}

const cache = new Map<string, RpcNames>();

/** The parts of a gRPC path `/pkg.Service/Method`; cached, as a process calls few methods. */
export function rpcNames(path: string): RpcNames {
  let names = cache.get(path);
  if (names !== undefined) return names;
  const trimmed = path.startsWith('/') ? path.slice(1) : path;
  const slash = trimmed.lastIndexOf('/');
  names =
    slash < 0
      ? { service: trimmed, method: '', spanName: trimmed }
      : { service: trimmed.slice(0, slash), method: trimmed.slice(slash + 1), spanName: trimmed };
  // Bounded: paths come from method definitions (and, on a server, registered handlers only).
  if (cache.size < 4096) cache.set(path, names);
  return names;
}
