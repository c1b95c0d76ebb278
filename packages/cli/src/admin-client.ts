import { type Instance, instanceOrigin } from '@meshlet/core';

/**
 * The instance metadata key that says where an instance's admin endpoint is: a path on
 * the instance's origin (`/_meshlet`), or `:<port><path>` for a separate admin port.
 * Written by the SDK when the admin handler is mounted (same constant as its ADMIN_META_KEY).
 */
export const ADMIN_META_KEY = 'meshlet-admin';

/** The admin status as the CLI reads it: the SDK's AdminStatus, taken defensively from JSON. */
export interface InstanceStatus {
  readonly service?: string;
  readonly instance?: string;
  readonly rules?: readonly { service: string; revision: number; rejected?: number; lastError?: { path: string; message: string } }[];
  readonly breakers?: readonly {
    breaker: { level: string; service: string; api?: string; instance?: string };
    state: string;
    failures?: number;
    calls?: number;
    /** Calls this breaker rejected, and times it opened, since it was made. */
    rejected?: number;
    opened?: number;
  }[];
  /** Called services whose `breaker` section is in shadow mode, and what it would have done. */
  readonly breakerShadow?: readonly {
    service: string;
    wouldReject: number;
    wouldOpen: number;
    wouldExclude: number;
    wouldTimeOut: number;
  }[];
  readonly limiter?: {
    allowed: number;
    refused: number;
    degraded?: boolean;
    inFlight?: number;
    /** Requests admitted that a ratelimit section in shadow mode would have refused. */
    shadowRefused?: number;
    /** The adaptive concurrency limit, when one is on. */
    adaptive?: { limit: number; inFlight: number; mode?: string };
    /** Per rule in force (and `(adaptive)`): admitted, refused, would have refused in shadow mode. */
    rules?: readonly { name: string; allowed: number; refused: number; shadowRefused: number }[];
  };
  /** Each called destination's adaptive limit (`ratelimit.outboundAdaptive`). */
  readonly outboundAdaptive?: readonly {
    service: string;
    limit: number;
    inFlight: number;
    admitted: number;
    refused: number;
    mode?: string;
  }[];
  readonly registry?: { mode: string; degraded: boolean };
  readonly degraded?: Readonly<Record<string, boolean>>;
  /** Coded conditions counted since the instance started (meshlet_conditions_total), by code. */
  readonly conditions?: Readonly<Record<string, number>>;
}

export type AdminResult =
  | { readonly ok: true; readonly url: string; readonly status: InstanceStatus }
  | { readonly ok: false; readonly url?: string; readonly reason: string };

export interface AdminClientOptions {
  readonly token: string | undefined;
  /** Used for instances that do not advertise ADMIN_META_KEY. */
  readonly defaultPath?: string | undefined;
  readonly timeoutMs: number;
}

/** Where an instance's admin status is, or undefined when it does not say. */
export function adminStatusUrl(instance: Instance, defaultPath?: string): string | undefined {
  const where = instance.metadata[ADMIN_META_KEY] ?? defaultPath;
  if (where === undefined || where === '') return undefined;
  let origin = instanceOrigin(instance);
  let path = where;
  const m = /^:(\d{1,5})(\/.*)?$/.exec(where);
  if (m) {
    origin = origin.replace(/:\d+$/, `:${m[1]}`);
    path = m[2] ?? '/_meshlet';
  }
  if (!path.startsWith('/')) return undefined;
  return `${origin}${path.replace(/\/+$/, '')}/status`;
}

/** Asks one instance for its status; never throws: a failure is a reason to show. */
export async function fetchAdminStatus(instance: Instance, opts: AdminClientOptions): Promise<AdminResult> {
  const url = adminStatusUrl(instance, opts.defaultPath);
  if (url === undefined) return { ok: false, reason: 'no endpoint' };
  if (!opts.token) return { ok: false, url, reason: 'no token' };
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${opts.token}` }, signal: AbortSignal.timeout(opts.timeoutMs) });
    if (res.status === 401) return { ok: false, url, reason: 'unauthorized' };
    if (!res.ok) return { ok: false, url, reason: `HTTP ${res.status}` };
    return { ok: true, url, status: (await res.json()) as InstanceStatus };
  } catch (err) {
    return { ok: false, url, reason: (err as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable' };
  }
}
