// `node examples/nest/dist/main.js express|fastify`: the Nest app on either platform,
// called over HTTP, then stopped with SIGTERM through Nest's shutdown hooks.
import 'reflect-metadata';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MESH } from '@meshlet/nestjs';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { createMesh, getTag, type Mesh } from 'meshlet';
import { AppModule } from './app.module.js';

const platform = process.argv[2] === 'fastify' ? 'fastify' : 'express';

// user-service, a plain node:http service in the same (in-memory) registry.
const users = createMesh({ service: 'user-service' });
const usersServer = createServer(users.httpHandler((_req, res) => res.end(`user 42 (tier seen: ${getTag('user-tier')})`)));
usersServer.listen(0, '127.0.0.1');
await once(usersServer, 'listening');
await users.register({ port: (usersServer.address() as AddressInfo).port });

const app = await NestFactory.create(AppModule, platform === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), {
  logger: ['error'],
});
app.enableShutdownHooks();
await app.listen(0, '127.0.0.1');
const mesh = app.get<Mesh>(MESH);
await mesh.serve(app.getHttpServer(), { signals: [] }); // Nest's hooks own the signals
const port = (app.getHttpServer().address() as AddressInfo).port;
console.log(`${platform}: orders registered: ${(await mesh.registry.healthyInstances('orders')).length}`);

for (let i = 0; i < 3; i++) {
  const res = await globalThis.fetch(`http://127.0.0.1:${port}/orders`, { headers: { 'x-meshlet-tags': 'user-tier=vip' } });
  console.log(`GET /orders: ${res.status} ${await res.text()}`);
}

usersServer.close();
await users.close();
process.kill(process.pid, 'SIGTERM');
