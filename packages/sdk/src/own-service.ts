import {
  Authorizer,
  BadMeshKeyError,
  DEFAULT_IDENTITY_TTL_MS,
  DEFAULT_MAX_SKEW_MS,
  IDENTITY_HEADER,
  IdentitySigner,
  IdentityVerifier,
  type MeshKey,
  meshKeyCheck,
} from '@meshlet/auth';
import { MeshletError } from '@meshlet/core';
import { connectRedis, RateLimiter, type RedisConnection, RedisTokenBuckets } from '@meshlet/ratelimit';
import type { AdaptiveProtection } from './adaptive-protection.js';
import type { Destinations } from './destinations.js';
import type { MeshOptions } from './mesh-options.js';
import type { MeshSettings } from './mesh-settings.js';

/**
 * This service's own governance, read from its own rules: the rate limiter (Redis-backed
 * when configured, its local share divided by this service's healthy instances; the
 * adaptive concurrency limit when on), the
 * authorizer, and with mesh keys the identity verifier (inbound) and signer (outbound).
 */
export class OwnService {
  readonly rateLimiter: RateLimiter;
  readonly authorizer: Authorizer;
  readonly verifier: IdentityVerifier | undefined;
  readonly signer: IdentitySigner | undefined;
  readonly #settings: MeshSettings;
  readonly #destinations: Destinations;
  readonly #redis: RedisConnection | undefined;
  readonly #adaptive: AdaptiveProtection;
  /** How long a key taken out by setIdentityKeys is still accepted: while tokens signed with it live. */
  readonly #keyOverlapMs: number;

  constructor(settings: MeshSettings, options: MeshOptions, destinations: Destinations, adaptive: AdaptiveProtection) {
    const { service, version, namespace, clock, logger } = settings;
    this.#settings = settings;
    this.#adaptive = adaptive;
    this.#destinations = destinations;
    const redisUrl = options.ratelimit?.redisUrl;
    this.#redis = redisUrl ? connectRedis(redisUrl, { logger }) : undefined;
    const redis = this.#redis;
    this.rateLimiter = new RateLimiter({
      service,
      clock,
      logger,
      // The adaptive concurrency limit (the option's; a rule's `ratelimit.adaptive` wins).
      ...(adaptive.adaptive ? { adaptive: adaptive.adaptive } : {}),
      eventLoopDelay: adaptive.eventLoopDelay,
      eventLoopUtilization: adaptive.eventLoopUtilization,
      ...(redis
        ? {
            redis: new RedisTokenBuckets({
              send: redis.send,
              clock,
              ...(options.ratelimit?.redisTimeoutMs ? { timeoutMs: options.ratelimit.redisTimeoutMs } : {}),
            }),
          }
        : {}),
      // The local share of a distributed limit divides by the healthy instances of this service.
      instances: () => this.instanceCount(),
    });
    destinations.keep(service, this.rateLimiter.follow(destinations.rules(service)));
    if (redis)
      void destinations.directory.ensure(service).catch((err: Error) =>
        logger.warn('cannot follow the instances of this service: the local share of a distributed limit keeps the last known count', {
          code: 'MESHLET_INSTANCE_COUNT_UNKNOWN',
          service,
          error: err.message,
        }),
      );

    const auth = options.auth;
    // Auth rules apply whenever the service's document has them (TSF authority rules match
    // tags); only with mesh keys is there a verified caller for rules on the caller itself.
    this.authorizer = new Authorizer({ ...(auth?.defaultAction ? { defaultAction: auth.defaultAction } : {}) });
    destinations.keep(service, this.authorizer.follow(destinations.rules(service)));
    this.verifier = auth
      ? new IdentityVerifier({
          keys: [...auth.keys],
          clock,
          audience: service,
          // 0 is a setting (no tolerance), not "unset".
          ...(auth.maxSkewMs !== undefined ? { maxSkewMs: auth.maxSkewMs } : {}),
        })
      : undefined;
    this.#keyOverlapMs = (auth?.ttlMs ?? DEFAULT_IDENTITY_TTL_MS) + (auth?.maxSkewMs ?? DEFAULT_MAX_SKEW_MS);
    const authKey = auth?.keys[0];
    this.signer = authKey
      ? new IdentitySigner({
          identity: { service, namespace, instance: service, version },
          key: authKey,
          clock,
          ...(auth?.ttlMs !== undefined ? { ttlMs: auth.ttlMs } : {}),
        })
      : undefined;
  }

  /** The identity header for a call to `audience`, when auth is on. */
  get identityHeader(): ((audience: string) => [name: string, value: string]) | undefined {
    const signer = this.signer;
    return signer ? (audience) => [IDENTITY_HEADER, signer.header(audience)] : undefined;
  }

  /**
   * Healthy instances of this service, for the local share of a distributed limit while
   * Redis is down. A registry that shows none (an outage at start, a resync) does not make
   * the share the whole limit: the last known count stays; with none ever known it is 1,
   * logged (at most once per interval) and counted.
   */
  instanceCount(): number {
    const { service, logger } = this.#settings;
    const n = this.#destinations.directory.instances(service).length;
    if (n > 0) return n;
    const known = this.#destinations.knownInstances(service);
    if (known === 0)
      logger.warn('instance count of this service unknown: the local share of a distributed limit is the whole limit', {
        code: 'MESHLET_INSTANCE_COUNT_UNKNOWN',
        service,
      });
    return Math.max(1, known);
  }

  /** Rotates the mesh keys: every key checked before anything changes, so a bad list leaves the keys in force. */
  setIdentityKeys(keys: readonly MeshKey[], options: { overlapMs?: number } = {}): void {
    const { verifier, signer } = this;
    if (!verifier || !signer)
      throw new MeshletError(
        'MESHLET_BAD_OPTION',
        'setIdentityKeys: auth is off for this mesh; createMesh({ auth: { keys } }) turns it on',
      );
    if (!Array.isArray(keys) || keys.length === 0)
      throw new MeshletError('MESHLET_BAD_MESH_KEY', 'setIdentityKeys: give at least one mesh key; the first signs');
    for (const k of keys) {
      if (typeof k !== 'object' || k === null) throw new BadMeshKeyError('setIdentityKeys: every key is a MeshKey (meshKey(id, base64))');
      meshKeyCheck(k);
    }
    const overlapMs = options.overlapMs ?? this.#keyOverlapMs;
    verifier.setKeys(keys, { overlapMs });
    signer.setKey(keys[0] as MeshKey);
    this.#settings.logger.info('identity keys changed', { code: 'MESHLET_IDENTITY_KEYS', keys: keys.map((k) => k.id), overlapMs });
  }

  async close(): Promise<void> {
    this.#adaptive.close();
    await this.#redis?.close();
  }
}
