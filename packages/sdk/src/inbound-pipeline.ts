import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import {
  AuthDeniedError,
  type Authorizer,
  bindVerifiedCaller,
  type CatalogAnswer,
  forbidden,
  IDENTITY_HEADER,
  type IdentityVerifier,
  type VerifiedIdentity,
  verifiedCaller,
} from '@meshlet/auth';
import { getTag, type MeshContext, putTag, REQUEST_PATH_MAX_LENGTH, requestPath, runWithContext, type TagLookup } from '@meshlet/core';
import { requestTagsOf, verifiedSourceTags } from '@meshlet/propagation';
import { ALLOWED, RateLimitedError, type RateLimiter, type Release, rejection } from '@meshlet/ratelimit';
import { Attr, GovernanceErrorType, type Tracing } from '@meshlet/trace';
import { type InboundOptions, inboundContext, type TagHeaderTrust, thrownName } from './inbound.js';
import type { FastifyPlugin, Mesh, RequestHead } from './mesh-options.js';

/** Answers a request without the app: status, headers, body. */
export type Respond = (status: number, headers: Readonly<Record<string, string>>, body: string) => void;

/**
 * Runs the app for an admitted request. `release` gives back the concurrency slots the
 * request holds; the pipeline calls it when the response closes, and an adapter calls it
 * too when it sees the handler fail without answering (idempotent).
 */
type Next = (release: Release) => void;

export interface InboundPipelineDeps {
  readonly service: string;
  /** The path answered 200 (503 while stopping), or false. */
  readonly healthPath: string | false;
  readonly stopping: () => boolean;
  readonly context: InboundOptions;
  /** With auth on: only a caller whose identity verifies is a caller. */
  readonly verifier: IdentityVerifier | undefined;
  /** Whose tag headers are believed (`verified` needs the verifier). */
  readonly tagHeaders: TagHeaderTrust;
  readonly inboundTags: ((tags: TagLookup) => Readonly<Record<string, string>> | undefined) | undefined;
  readonly authorizer: Authorizer;
  readonly rateLimiter: RateLimiter;
  readonly tracing: Tracing | undefined;
  /** The admin endpoint's answer to a request by its canonical path (requestPath); false for other paths. */
  readonly admin: ((req: IncomingMessage, res: ServerResponse, path: string) => boolean) | undefined;
  /** The API catalog endpoint's answer to an admitted request, by its canonical path (requestPath); undefined for other paths. */
  readonly catalog: ((method: string, path: string, headers: IncomingHttpHeaders) => CatalogAnswer | undefined) | undefined;
  /** The route template of a request by the API catalog, for frameworks that do not route (node:http). */
  readonly routeOf?: (method: string, path: string) => string | undefined;
  readonly logger: InboundOptions['logger'];
}

/** The framework front ends of a Mesh, all on one inbound pipeline. */
export type FrameworkAdapters = Pick<Mesh, 'contextOf' | 'httpHandler' | 'express' | 'expressErrors' | 'fastify'>;

/**
 * The inbound path shared by every framework: admin endpoint, health, context (with the
 * verified caller), server span, auth (403), rate limits (429), then the API catalog or
 * the app inside the context. node:http, Express and Fastify are thin adapters over it.
 */
export function inboundPipeline(deps: InboundPipelineDeps): FrameworkAdapters {
  const { service, healthPath, verifier, authorizer, rateLimiter, tracing, logger } = deps;

  /**
   * The context of an inbound request. With auth on, the caller is the verified identity
   * or nobody: never the caller header, which anyone can type.
   */
  const contextOf = (req: RequestHead): MeshContext => withInboundTags(verifiedContextOf(req));
  /**
   * Adds the tags `inboundTags` derives, leaving every tag that arrived as it was. The app's
   * function runs on what the client sent: when it throws, no tag is derived for the
   * request (`MESHLET_TAG_DROPPED`, logged at most once per interval, with the error's name).
   */
  const withInboundTags = (ctx: MeshContext): MeshContext => {
    const derive = deps.inboundTags;
    if (!derive) return ctx;
    try {
      const extra = derive((k) => getTag(k, ctx));
      if (extra)
        for (const [k, v] of Object.entries(extra))
          if (typeof v === 'string' && !ctx.tags.has(k)) putTag(ctx.tags as Map<string, string>, k, v);
    } catch (err) {
      logger.warn('tags not derived', {
        code: 'MESHLET_TAG_DROPPED',
        key: '(inboundTags)',
        reason: 'inboundTags-threw',
        error: thrownName(err),
      });
    }
    return ctx;
  };
  /** `path`: the canonical path when the pipeline has it (requestPath); contextOf works it out. */
  const verifiedContextOf = (req: RequestHead, path?: string): MeshContext => {
    const url = req.originalUrl ?? req.url ?? '/';
    if (!verifier) return inboundContext(req.headers, req.method ?? 'GET', url, deps.context, undefined, deps.tagHeaders === 'any', path);
    const raw = req.headers[IDENTITY_HEADER];
    const identity = verifier.verify(Array.isArray(raw) ? raw.join(', ') : raw);
    const caller = identity
      ? {
          service: identity.service,
          namespace: identity.namespace,
          instance: identity.instance,
          ...(identity.version ? { version: identity.version } : {}),
        }
      : {};
    const trusted = deps.tagHeaders === 'any' || (deps.tagHeaders === 'verified' && identity !== undefined);
    const ctx = inboundContext(req.headers, req.method ?? 'GET', url, deps.context, caller, trusted, path);
    keepVerifiedSourceTags(ctx, identity);
    bindVerifiedCaller(ctx, identity);
    return ctx;
  };

  /** `route`: the route template when the framework knows it before the app runs (Fastify). */
  const admit = (req: IncomingMessage, res: ServerResponse, respond: Respond, next: Next, route?: string): void => {
    // The canonical path, once: what every path rule compares (see requestPath), and where
    // the admin endpoint and the API catalog are found. A target the frameworks could read
    // as another path than any one form (a dot segment, a "\", neither a path nor a URL) is
    // refused before the app and the endpoints, as no rule could be sure of it.
    const target = (req as RequestHead).originalUrl ?? req.url ?? '/';
    const path = requestPath(target);
    if (path === undefined) {
      // A client decides how often: logged once per interval, every one counted. A path over
      // REQUEST_PATH_MAX_LENGTH is sound but too long for rules to test in bounded work.
      if (requestPath(target, Number.POSITIVE_INFINITY) !== undefined) {
        logger.warn('request target refused: path too long', { code: 'MESHLET_REQUEST_PATH_TOO_LONG', limit: REQUEST_PATH_MAX_LENGTH });
        respond(414, JSON_TYPE, PATH_TOO_LONG_BODY);
      } else {
        logger.warn('request target refused: no one path for rules to compare', { code: 'MESHLET_BAD_REQUEST_TARGET' });
        respond(400, JSON_TYPE, BAD_TARGET_BODY);
      }
      return;
    }
    // The admin endpoint, in front of the rules: its own token admits a caller.
    if (deps.admin?.(req, res, path) !== true) admitApp(req, res, respond, next, route, path);
  };
  const admitApp = (
    req: IncomingMessage,
    res: ServerResponse,
    respond: Respond,
    next: Next,
    route: string | undefined,
    path: string,
  ): void => {
    let ctx: MeshContext;
    try {
      ctx = withInboundTags(verifiedContextOf(req, path));
    } catch (err) {
      // Never the app without its auth and limits: 500, as a handler that threw.
      logger.error('request context not built; answered 500', { code: 'MESHLET_CONTEXT_FAILED', error: thrownName(err) });
      respond(500, JSON_TYPE, CONTEXT_FAILED_BODY);
      return;
    }
    if (healthPath && path === healthPath && (req.method === 'GET' || req.method === 'HEAD')) {
      const stopping = deps.stopping();
      respond(stopping ? 503 : 200, { 'content-type': 'application/json' }, JSON.stringify({ status: stopping ? 'DOWN' : 'UP' }));
      return;
    }
    // The span first: a request that governance refuses is in the traces too. Its route: the
    // framework's when it has routed already (Fastify), else the API catalog's template.
    const known = route ?? deps.routeOf?.(req.method ?? 'GET', path);
    // The revision of this service's rule document in force: its auth and limits decide here.
    const rulesRevision = Math.max(authorizer.revision, rateLimiter.revision);
    const span = tracing?.startServerSpan(req.headers, req.method ?? 'GET', known, {
      target: req.url ?? '/',
      ...(ctx.caller.service ? { caller: ctx.caller.service } : {}),
      ...(rulesRevision > 0 ? { rulesRevision } : {}),
    });
    if (span) {
      res.once('close', () => {
        // Express knows the route only after routing, inside the app.
        const matched = (req as { route?: { path?: string }; baseUrl?: string }).route?.path;
        if (route === undefined && typeof matched === 'string') span.setRoute(`${(req as { baseUrl?: string }).baseUrl ?? ''}${matched}`);
        // Closed before the answer was finished (the caller gave up on a hung handler):
        // not node's default 200, an error of its own that the server metrics count.
        if (res.writableFinished) span.end(res.statusCode);
        else span.endUnanswered(res.headersSent ? res.statusCode : undefined);
      });
    }
    // One lookup for auth and the limiter. The canonical path as it is: templates fold it
    // themselves (foldPath, which keeps the last path it folded, as pathTagValue does).
    const tag = (k: string) => getTag(k, ctx);
    const request = ctx.request ?? { method: req.method ?? 'GET', path };
    const allowed = authorizer.decide(verifiedCaller(ctx), request, tag);
    // Which auth rule decided (or the section's default, when it denied): `<rule>:allowed|denied`.
    if (span && allowed.shadow === undefined && (allowed.rule !== undefined || !allowed.allowed))
      span.setAttribute(Attr.meshletAuth, `${allowed.rule ?? '(default)'}:${allowed.allowed ? 'allowed' : 'denied'}`);
    if (!allowed.allowed) {
      span?.setOutcome(GovernanceErrorType.authDenied);
      const f = forbidden(allowed, service);
      respond(f.status, f.headers, f.body);
      return;
    }
    if (allowed.shadow !== undefined) {
      // Shadow mode: counted (conditions, the authorizer's stats), logged once per interval, traced, not enforced.
      span?.setAttribute(Attr.meshletShadow, `auth:${allowed.shadow}:would-deny`);
      logger.info('auth rules in shadow mode would have denied a call', { code: 'MESHLET_AUTH_SHADOW', service, rule: allowed.shadow });
    }
    const go = (release: Release) => {
      // The catalog is an API of this service: answered here, once auth and limits admitted
      // the request, where the app would be called (a default-deny service lists its APIs
      // only to whom its rules let in). Its answer closes the response, which gives the slots back.
      // Its path is the canonical one the rules compared, not the framework's req.url (Express
      // strips a mount from it): a rule on the catalog's path is a rule on the catalog.
      const answer = deps.catalog?.(req.method ?? 'GET', path, req.headers);
      const app = answer ? () => respond(answer.status, answer.headers, answer.body) : () => next(release);
      return span ? span.run(() => runWithContext(ctx, app)) : runWithContext(ctx, app);
    };
    const decision = rateLimiter.decide({ method: request.method, path, tag });
    const act = (d: Awaited<typeof decision>) => {
      if (d === ALLOWED) return go(noSlot);
      if (d.allowed && d.shadow && span) span.setAttribute(Attr.meshletShadow, `ratelimit:${d.shadow.name}:would-refuse`);
      if (d.allowed) return runHolding(res, d.release, go);
      if (span) {
        span.setOutcome(GovernanceErrorType.rateLimited);
        span.setAttribute(Attr.meshletLimiter, `${d.rule.name}:rejected`);
        if (d.bucket !== undefined) span.setAttribute(Attr.meshletLimiterBucket, d.bucket);
      }
      const r = rejection(d, service);
      respond(r.status, r.headers, r.body);
    };
    if (decision instanceof Promise)
      decision.then(act, (err: Error) => {
        logger.error('rate limiter failed; admitting', { code: 'MESHLET_RATELIMIT_FAILED', error: err.message });
        go(noSlot);
      });
    else act(decision);
  };

  /** The response for a governance error a handler threw (a decorator's limit or auth rule). */
  const governedError = (err: unknown) =>
    err instanceof RateLimitedError
      ? rejection(err.decision, service)
      : err instanceof AuthDeniedError
        ? forbidden(err.decision, service)
        : undefined;

  const fastifyPlugin: FastifyPlugin = (app, _opts, done) => {
    // Fastify answers a handler's error itself, so the response closes and the slot goes back.
    app.addHook('onRequest', (request, reply, next) =>
      admit(
        request.raw,
        reply.raw,
        (status, headers, body) => {
          reply.hijack();
          writeNode(reply.raw)(status, headers, body);
        },
        () => next(),
        // Fastify has routed before onRequest; a 404 has no route.
        request.routeOptions?.url,
      ),
    );
    app.setErrorHandler((error, _request, reply) => {
      const answer = governedError(error);
      if (!answer) return reply.send(error);
      return reply.code(answer.status).headers(answer.headers).send(answer.body);
    });
    done();
  };

  return {
    contextOf,
    httpHandler: (listener) => (req, res) =>
      admit(req, res, writeNode(res), (release) => {
        const result: unknown = listener(req, res);
        if (result instanceof Promise) {
          result.catch((err: unknown) => {
            // The handler is done; a response it never ended must not hold a slot until the client gives up.
            release();
            const answer = governedError(err);
            if (!answer) return Promise.reject(err); // not ours: surfaces as it would without the mesh
            if (!res.headersSent) writeNode(res)(answer.status, answer.headers, answer.body);
          });
        }
      }),
    // Express answers a handler's error (500 or the app's error handler), so the response closes.
    express: () => (req, res, next) => admit(req, res, writeNode(res), () => next()),
    expressErrors: () => (err, _req, res, next) => {
      const answer = governedError(err);
      if (!answer || res.headersSent) return next(err);
      writeNode(res)(answer.status, answer.headers, answer.body);
    },
    // What fastify-plugin sets: the hook applies to the whole app, not only an encapsulated child.
    fastify: Object.assign(fastifyPlugin, { [Symbol.for('skip-override')]: true }),
  };
}

/**
 * With auth on, tags under `source.` describe the caller (TSF's `source.service.name`,
 * `source.group.id`… from `tsf-metadata`, or anyone's tag header), and rules on them must
 * not take a typed header's word: they are dropped, and the ones the verified identity
 * vouches for are set from it — as `local` tags: they describe this hop's caller, and the
 * next service has a caller of its own. A TSF authority rule on `source.group.id` then
 * matches no caller, since no identity carries the group.
 */
let lastIdentity: VerifiedIdentity | undefined;
let lastSourceTags: ReturnType<typeof verifiedSourceTags> = [];

function keepVerifiedSourceTags(ctx: MeshContext, identity: VerifiedIdentity | undefined): void {
  const tags = ctx.tags as Map<string, string>;
  // Deleting the entry being visited is safe in a Map's iteration.
  for (const key of tags.keys()) if (key.startsWith('source.')) tags.delete(key);
  if (!identity) return;
  const scopes = requestTagsOf(ctx)?.scopes;
  // The verifier hands back the same identity object for a token it remembers (every call
  // of a caller for half its token's life): its tags are made once for it, not per request.
  if (identity !== lastIdentity) {
    lastSourceTags = verifiedSourceTags(identity);
    lastIdentity = identity;
  }
  for (const [key, value] of lastSourceTags) {
    tags.set(key, value);
    scopes?.set(key, 'local');
  }
}

const noSlot: Release = () => undefined;

const JSON_TYPE: Readonly<Record<string, string>> = { 'content-type': 'application/json' };
const BAD_TARGET_BODY = JSON.stringify({
  error: 'bad request',
  code: 'MESHLET_BAD_REQUEST_TARGET',
  reason: 'the request target has a "." or ".." segment or a "\\", or is neither a path nor an absolute URL',
});
const PATH_TOO_LONG_BODY = JSON.stringify({
  error: 'URI too long',
  code: 'MESHLET_REQUEST_PATH_TOO_LONG',
  reason: `the request path is longer than ${REQUEST_PATH_MAX_LENGTH} characters (its query is not counted)`,
});
const CONTEXT_FAILED_BODY = JSON.stringify({ error: 'internal error', code: 'MESHLET_CONTEXT_FAILED' });

/**
 * Runs an admitted request that holds concurrency slots and gives them back when its
 * response closes: 'close' fires once the response is finished and when the connection
 * drops first (a client that aborts), whatever the handler did. A handler that throws
 * synchronously gives them back at once, since nobody may ever end that response.
 */
function runHolding(res: ServerResponse, release: Release, go: (release: Release) => void): void {
  // A distributed decision may resolve after the client has gone: no 'close' is coming.
  if (res.closed) release();
  else res.once('close', release);
  try {
    go(release);
  } catch (err) {
    release();
    throw err;
  }
}

const writeNode =
  (res: ServerResponse): Respond =>
  (status, headers, body) => {
    res.writeHead(status, headers);
    res.end(body);
  };
