import { adminEndpoint, adminToken, BodyTooLargeError, badOption, type Instance, readBoundedBody, wholeNumber } from '@meshlet/core';
import { Slots } from './slots.js';

/** Core's: the instance metadata key that says where an instance's admin endpoint is. */
export { ADMIN_META_KEY } from '@meshlet/core';

/** The most of an admin endpoint's answer read: a registration can point anywhere, at a listener that answers without end. */
export const ADMIN_ANSWER_MAX_BYTES = 1024 * 1024;

/** Admin endpoints an AdminClient asks at once, by default: thousands registered are asked this many at a time. */
export const ADMIN_CONCURRENCY = 16;

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
  /**
   * The operator's admin secret (MESHLET_ADMIN_TOKEN). It is never sent: each instance is sent
   * core's adminToken for the address it is asked at, which opens no other instance.
   */
  readonly token: string | undefined;
  /** Used for instances that do not advertise ADMIN_META_KEY. */
  readonly defaultPath?: string | undefined;
  /** Per instance, the answer's body included. */
  readonly timeoutMs: number;
  /** Instances asked at once (default ADMIN_CONCURRENCY); the rest wait for a slot. */
  readonly concurrency?: number;
  /** The most of an answer read (default ADMIN_ANSWER_MAX_BYTES); a longer one is `answer too large`. */
  readonly maxBytes?: number;
}

/** Where an instance's admin status is, or undefined when it does not say. */
export function adminStatusUrl(instance: Instance, defaultPath?: string): string | undefined {
  const at = adminEndpoint(instance, defaultPath);
  return at && `${at.origin}${at.path}/status`;
}

type Fetched =
  | { readonly ok: true; readonly url: string; readonly text: string }
  | { readonly ok: false; readonly url?: string; readonly reason: string };

/**
 * Asks instances' admin endpoints: each with its own token (never the secret), at most
 * `concurrency` at once however many are asked, each answer bounded in time and size, no
 * redirect followed. Never throws for an instance: a failure is a reason to show.
 */
export class AdminClient {
  readonly #secret: string | undefined;
  readonly #defaultPath: string | undefined;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #slots: Slots;

  constructor(options: AdminClientOptions) {
    const { timeoutMs, concurrency = ADMIN_CONCURRENCY, maxBytes = ADMIN_ANSWER_MAX_BYTES } = options;
    if (!wholeNumber(timeoutMs, 1, 2_147_483_647))
      throw badOption('timeoutMs', `${String(timeoutMs)} must be a whole number of ms, at least 1`);
    if (!wholeNumber(concurrency, 1, 1_000)) throw badOption('concurrency', `${String(concurrency)} must be a whole number from 1 to 1000`);
    if (!wholeNumber(maxBytes, 1, 2 ** 30)) throw badOption('maxBytes', `${String(maxBytes)} must be a whole number from 1 to 2^30`);
    this.#secret = options.token || undefined;
    this.#defaultPath = options.defaultPath;
    this.#timeoutMs = timeoutMs;
    this.#maxBytes = maxBytes;
    this.#slots = new Slots(concurrency);
  }

  /**
   * The instance's `/status`: a JSON object, else a failure (`not JSON`, `not a status`). Its
   * fields are as the instance sent them: read each one defensively.
   */
  async status(instance: Instance): Promise<AdminResult> {
    const got = await this.#get(instance, 'status');
    if (!got.ok) return got;
    let status: unknown;
    try {
      status = JSON.parse(got.text);
    } catch {
      return { ok: false, url: got.url, reason: 'not JSON' };
    }
    if (typeof status !== 'object' || status === null || Array.isArray(status)) return { ok: false, url: got.url, reason: 'not a status' };
    return { ok: true, url: got.url, status: status as InstanceStatus };
  }

  /** The instance's `/metrics` (Prometheus text), or undefined when it does not answer. */
  async metricsText(instance: Instance): Promise<string | undefined> {
    const got = await this.#get(instance, 'metrics');
    return got.ok ? got.text : undefined;
  }

  async #get(instance: Instance, what: 'status' | 'metrics'): Promise<Fetched> {
    const at = adminEndpoint(instance, this.#defaultPath);
    if (at === undefined) return { ok: false, reason: 'no endpoint' };
    const url = `${at.origin}${at.path}/${what}`;
    if (this.#secret === undefined) return { ok: false, url, reason: 'no token' };
    const token = adminToken(this.#secret, at.authority);
    return this.#slots.run(() => this.#fetch(url, token));
  }

  async #fetch(url: string, token: string): Promise<Fetched> {
    try {
      const res = await fetch(url, {
        headers: { authorization: `Bearer ${token}` },
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      if (!res.ok) {
        const code = res.status === 503 ? await answerCode(res) : undefined;
        if (code === undefined) await res.body?.cancel().catch(() => {});
        const reason = res.status === 401 ? 'unauthorized' : code === NOT_REGISTERED ? 'not registered yet' : `HTTP ${res.status}`;
        return { ok: false, url, reason };
      }
      return { ok: true, url, text: await readBoundedBody(res, this.#maxBytes) };
    } catch (err) {
      if (err instanceof BodyTooLargeError) return { ok: false, url, reason: 'answer too large' };
      return { ok: false, url, reason: (err as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable' };
    }
  }
}

/** The code an instance's admin endpoint answers before its mesh registers (sdk's admin handler). */
const NOT_REGISTERED = 'MESHLET_ADMIN_NOT_REGISTERED';

/** The `code` of a refusal's JSON body, read within 4 KB; undefined when there is none. */
async function answerCode(res: Response): Promise<string | undefined> {
  try {
    const body = JSON.parse(await readBoundedBody(res, 4096)) as { code?: unknown };
    return typeof body.code === 'string' ? body.code : undefined;
  } catch {
    return undefined;
  }
}
