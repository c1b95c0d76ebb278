import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  consoleLogger,
  currentContext,
  encodeTags,
  InMemoryRegistry,
  type Instance,
  type Logger,
  type MeshContext,
  MeshletError,
  MetaKey,
  NoMeshError,
  type Registry,
  runWithContext,
  SERVICE_NAME,
} from '@meshlet/core';
import { type Fetch, governedFetch } from './governed-fetch.js';
import { type HeaderTag, inboundContext } from './inbound.js';
import { ServiceDirectory } from './service-directory.js';

export interface MeshOptions {
  /** This service's name: a DNS label (letters, digits, `-`; starts with a letter), as Spring Cloud requires. */
  readonly service: string;
  readonly version?: string;
  readonly namespace?: string;
  /** The port this service listens on; can also be given to `register()` once the server is listening. */
  readonly port?: number;
  /** The address other services reach this one at. Default 127.0.0.1. */
  readonly address?: string;
  /** Default `<service>-<port>`, as Spring Cloud Consul does. */
  readonly instanceId?: string;
  /** Extra instance metadata (zone, region, lane, weight…); version and namespace are added. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Where services are found. Default: the process-wide in-memory registry. */
  readonly registry?: Registry;
  /** Request headers lifted into custom tags at this service's edge. */
  readonly tagsFromHeaders?: readonly HeaderTag[];
  readonly logger?: Logger;
  /** The HTTP client governed calls are sent with. Default: global fetch. */
  readonly fetch?: Fetch;
}

type NodeListener<Req extends IncomingMessage, Res extends ServerResponse> = (req: Req, res: Res) => void;
type Next = (err?: unknown) => void;

/** The part of a Fastify instance the plugin uses. */
export interface FastifyHookHost {
  addHook(name: 'onRequest', hook: (request: { raw: IncomingMessage }, reply: unknown, done: (err?: Error) => void) => void): unknown;
}
export type FastifyPlugin = (app: FastifyHookHost, opts: unknown, done: (err?: Error) => void) => void;

export interface Mesh {
  readonly service: string;
  readonly version: string;
  readonly namespace: string;
  readonly registry: Registry;
  readonly logger: Logger;
  /** WHATWG fetch that resolves service names through the registry and carries tags on. */
  readonly fetch: Fetch;
  /** Registers this instance; call it once the server is listening. */
  register(overrides?: { port?: number; address?: string }): Promise<Instance>;
  /** The registered instance, if any. */
  readonly instance: Instance | undefined;
  /** A healthy instance of `service`, chosen as a governed call would. */
  resolve(service: string): Promise<Instance>;
  /** The context of an inbound request, built from its headers. */
  contextOf(req: IncomingMessage): MeshContext;
  /** Wraps a node:http request listener so that it runs inside the request's context. */
  httpHandler<Req extends IncomingMessage, Res extends ServerResponse>(listener: NodeListener<Req, Res>): NodeListener<Req, Res>;
  /** Express middleware: `app.use(mesh.express())`. */
  express(): (req: IncomingMessage, res: ServerResponse, next: Next) => void;
  /** Fastify plugin: `app.register(mesh.fastify)`. */
  readonly fastify: FastifyPlugin;
  /** Deregisters and stops following the registry. */
  close(): Promise<void>;
}

let processRegistry: InMemoryRegistry | undefined;
/** The in-memory registry shared by every mesh in this process that was not given one. */
export function defaultRegistry(): InMemoryRegistry {
  processRegistry ??= new InMemoryRegistry();
  return processRegistry;
}

let lastMesh: Mesh | undefined;

/** Creates a mesh for one service. Invalid options throw MeshletError `MESHLET_BAD_OPTION` naming the field. */
export function createMesh(options: MeshOptions): Mesh {
  const service = options.service;
  if (typeof service !== 'string' || !SERVICE_NAME.test(service)) {
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      `service: "${String(service)}" is not a DNS label (letters, digits and "-", starting with a letter, at most 63): Spring clients cannot call such a name`,
    );
  }
  if (options.port !== undefined && !validPort(options.port)) {
    throw new MeshletError('MESHLET_BAD_OPTION', `port: ${options.port} is not a port number (1-65535)`);
  }
  const version = options.version ?? '0.0.0';
  const namespace = options.namespace ?? 'default';
  const registry = options.registry ?? defaultRegistry();
  const logger = options.logger ?? consoleLogger('warn', service);
  const directory = new ServiceDirectory(registry);
  const tagsFromHeaders = options.tagsFromHeaders ?? [];
  let instance: Instance | undefined;

  const callerHeader = () =>
    encodeTags([
      ['service', service],
      ['version', version],
      ['namespace', namespace],
      ...(instance ? [['instance', instance.id] as const] : []),
    ]).header;

  let fetchImpl = governedFetch({ directory, callerHeader: callerHeader(), logger, send: options.fetch ?? globalThis.fetch });
  const inbound = { tagsFromHeaders, logger, owner: undefined as unknown };

  const contextOf = (req: IncomingMessage): MeshContext =>
    inboundContext(req.headers, req.method ?? 'GET', (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/', inbound);

  const fastifyPlugin: FastifyPlugin = (app, _opts, done) => {
    app.addHook('onRequest', (request, _reply, next) => runWithContext(contextOf(request.raw), () => next()));
    done();
  };
  // What fastify-plugin sets: the hook applies to the whole app, not only an encapsulated child.
  const fastify = Object.assign(fastifyPlugin, { [Symbol.for('skip-override')]: true });

  const mesh: Mesh = {
    service,
    version,
    namespace,
    registry,
    logger,
    get fetch() {
      return fetchImpl;
    },
    get instance() {
      return instance;
    },
    async register(overrides = {}) {
      const port = overrides.port ?? options.port;
      if (port === undefined || !validPort(port)) {
        throw new MeshletError(
          'MESHLET_BAD_OPTION',
          `port: ${String(port)} — give createMesh({ port }) or register({ port }) the port the server listens on`,
        );
      }
      const address = overrides.address ?? options.address ?? '127.0.0.1';
      instance = {
        id: options.instanceId ?? `${service}-${port}`,
        service,
        address,
        port,
        tags: [],
        metadata: { [MetaKey.secure]: 'false', ...options.metadata, [MetaKey.version]: version, [MetaKey.namespace]: namespace },
        health: 'passing',
      };
      fetchImpl = governedFetch({ directory, callerHeader: callerHeader(), logger, send: options.fetch ?? globalThis.fetch });
      await registry.register(instance);
      return instance;
    },
    resolve: (name) => directory.pick(name),
    contextOf,
    httpHandler: (listener) => (req, res) => runWithContext(contextOf(req), () => listener(req, res)),
    express: () => (req, _res, next) => runWithContext(contextOf(req), () => next()),
    fastify,
    async close() {
      directory.close();
      if (instance) await registry.deregister(instance.id);
      instance = undefined;
      if (lastMesh === mesh) lastMesh = undefined;
    },
  };
  inbound.owner = mesh;
  lastMesh = mesh;
  return mesh;
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port > 0 && port < 65536;
}

/**
 * fetch bound to the current mesh: the one serving the current request, else the mesh
 * created last. Same signature as global fetch.
 */
export const fetch: Fetch = (input, init) => {
  const owner = currentContext().owner as Mesh | undefined;
  const mesh = owner ?? lastMesh;
  if (!mesh) return Promise.reject(new NoMeshError());
  return mesh.fetch(input, init);
};
