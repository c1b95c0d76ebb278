import {
  type BeforeApplicationShutdown,
  type DynamicModule,
  type FactoryProvider,
  Global,
  Inject,
  type MiddlewareConsumer,
  Module,
  type ModuleMetadata,
  type NestModule,
  type Provider,
} from '@nestjs/common';
import { APP_FILTER, HttpAdapterHost } from '@nestjs/core';
import { createMesh, type FastifyPlugin, type Mesh, MeshletError, type MeshOptions } from 'meshlet';
import { MeshletExceptionFilter } from './meshlet-exception-filter.js';
import { MESH, MESHLET_OPTIONS } from './tokens.js';

/** What of an Express 5 application this module reads: its middleware, in order. */
interface ExpressApp {
  use(fn: unknown): void;
  readonly router?: { readonly stack?: { readonly handle?: { readonly name?: string } }[] };
}

/** body-parser's middleware, by name: what Nest (`bodyParser`, `useBodyParser`) puts on an Express app. */
const BODY_PARSERS = new Set(['jsonParser', 'urlencodedParser', 'textParser', 'rawParser']);

/**
 * Moves the middleware just added (the pipeline) in front of the body parsers: Nest adds
 * them in `init()` before modules configure theirs, so a request the rules refuse would
 * have its body read and parsed first (up to 100 KB of JSON a request), and a malformed
 * one answered 400 by the parser instead of 403/429. Other middleware the app added before
 * (CORS, for a preflight) stays ahead of the pipeline.
 */
function aheadOfBodyParsers(app: ExpressApp): void {
  const stack = app.router?.stack;
  if (!Array.isArray(stack) || stack.length < 2) return;
  const first = stack.findIndex((layer) => BODY_PARSERS.has(layer?.handle?.name ?? ''));
  if (first < 0 || first === stack.length - 1) return;
  stack.splice(first, 0, stack.pop() as (typeof stack)[number]);
}

/** Options to create the mesh from, or a mesh made elsewhere. */
export type MeshletModuleOptions = MeshOptions | { readonly mesh: Mesh };

export interface MeshletModuleAsyncOptions {
  readonly imports?: ModuleMetadata['imports'];
  // biome-ignore lint/suspicious/noExplicitAny: Nest's own factory signature (injected values of any type).
  readonly useFactory: (...args: any[]) => MeshletModuleOptions | Promise<MeshletModuleOptions>;
  readonly inject?: FactoryProvider['inject'];
}

const meshProvider: Provider = {
  provide: MESH,
  inject: [MESHLET_OPTIONS],
  useFactory: (options: MeshletModuleOptions): Mesh => ('mesh' in options ? options.mesh : createMesh(options)),
};

/**
 * The mesh in a NestJS application: `MeshletModule.forRoot({ service: 'orders' })` (or
 * `forRootAsync` with a factory) provides the Mesh (`@InjectMesh()`), puts the inbound
 * pipeline in front of every route — context and tags, SERVER span, the service's auth
 * (403) and rate-limit (429) rules, health path — on Express and on Fastify, answers a
 * decorated method's `RateLimitedError`/`AuthDeniedError` with its 429/403 (a global
 * exception filter), and stops the mesh gracefully in Nest's shutdown hooks
 * (`app.enableShutdownHooks()`): health 503, deregister, drain.
 */
@Global()
@Module({})
export class MeshletModule implements NestModule, BeforeApplicationShutdown {
  constructor(
    @Inject(MESH) private readonly mesh: Mesh,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  static forRoot(options: MeshletModuleOptions): DynamicModule {
    return MeshletModule.module_([{ provide: MESHLET_OPTIONS, useValue: options }], []);
  }

  static forRootAsync(options: MeshletModuleAsyncOptions): DynamicModule {
    return MeshletModule.module_(
      [{ provide: MESHLET_OPTIONS, useFactory: options.useFactory, inject: [...(options.inject ?? [])] }],
      options.imports ?? [],
    );
  }

  private static module_(options: Provider[], imports: NonNullable<ModuleMetadata['imports']>): DynamicModule {
    return {
      module: MeshletModule,
      global: true,
      imports,
      providers: [...options, meshProvider, { provide: APP_FILTER, useClass: MeshletExceptionFilter }],
      exports: [MESH],
    };
  }

  /** Runs before Nest registers the routes: the pipeline goes in front of all of them. */
  configure(_consumer: MiddlewareConsumer): void {
    const adapter = this.adapterHost.httpAdapter;
    if (!adapter) return; // a microservice or a standalone application: nothing inbound
    const type = adapter.getType();
    if (type === 'express') {
      const app = adapter.getInstance() as ExpressApp;
      app.use(this.mesh.express());
      aheadOfBodyParsers(app);
    } else if (type === 'fastify') {
      // The pipeline's onRequest hook only: Nest answers errors itself (the exception
      // filter above), and its Fastify error handler must stay in place.
      const plugin: FastifyPlugin = (instance, opts, done) =>
        this.mesh.fastify({ addHook: instance.addHook.bind(instance), setErrorHandler: () => instance }, opts, done);
      (adapter as unknown as { register(plugin: unknown): unknown }).register(
        Object.assign(plugin, { [Symbol.for('skip-override')]: true }),
      );
    } else {
      throw new MeshletError('MESHLET_BAD_OPTION', `MeshletModule: the ${type} platform is not supported (express, fastify)`);
    }
  }

  /** Nest's shutdown (SIGTERM with enableShutdownHooks, or app.close()): stop the mesh gracefully first. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.mesh.shutdown();
  }
}
