import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Mesh } from './mesh-options.js';

/** The part of a Koa context the middleware uses (Koa 2 and 3). */
export interface KoaContextLike {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Set to false when the mesh answered the request itself (health, 403, 429). */
  respond?: boolean;
}

export type KoaMiddleware = (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void>;

/**
 * Koa middleware on the same inbound pipeline as node:http, Express and Fastify:
 * `app.use(mesh.koa())`, first. The admin endpoint, catalog and health path, the context
 * with the verified caller and tags, the SERVER span, auth (403) and rate limits (429);
 * the rest of the app (`await next()`) runs inside the request's context, so governed calls
 * from any later middleware carry its tags. A limit or auth rule a decorated handler
 * throws (`@RateLimit`, `@Authorize`) becomes its 429 or 403; other errors go on to Koa.
 */
export function koaMiddleware(mesh: Pick<Mesh, 'express' | 'expressErrors'>): KoaMiddleware {
  const admit = mesh.express();
  const answerGoverned = mesh.expressErrors();
  return (ctx, next) =>
    new Promise<void>((resolve, reject) => {
      const { req, res } = ctx;
      let admitted = false;
      // The pipeline answered without the app (health, 403, 429): Koa must not write again.
      const answered = () => {
        if (admitted) return;
        ctx.respond = false;
        resolve();
      };
      res.once('finish', answered);
      res.once('close', answered);
      admit(req, res, (err?: unknown) => {
        admitted = true;
        res.off('finish', answered);
        res.off('close', answered);
        if (err !== undefined) return reject(err);
        next().then(
          () => {
            nameRoute(ctx);
            resolve();
          },
          (error: unknown) => {
            nameRoute(ctx);
            let passedOn = false;
            answerGoverned(error, req, res, (passed?: unknown) => {
              passedOn = true;
              reject(passed);
            });
            // A governance error: its 429 or 403 is written.
            if (!passedOn) {
              ctx.respond = false;
              resolve();
            }
          },
        );
      });
    });
}

/**
 * The route template a Koa router matched (`@koa/router` sets `ctx._matchedRoute`), where
 * the pipeline looks for Express's (`req.route.path`) when the response closes: the server
 * span is named `GET /items/:id`, not after the path with its ids.
 */
function nameRoute(ctx: KoaContextLike): void {
  const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
  const req = ctx.req as IncomingMessage & { route?: { path?: string } };
  if (typeof matched === 'string' && req.route === undefined) req.route = { path: matched };
}
