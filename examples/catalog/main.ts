// The API catalog from OpenAPI JSDoc: an Express service whose routes carry `@openapi`
// blocks. The mesh reads them (swagger-jsdoc), serves the list at /meshlet/apis, publishes
// it with the registration (its hash in Meta), and an API-level rule matches requests by
// the same templates. Run: `npm run build && node examples/dist/catalog/main.js`.
import { fileURLToPath } from 'node:url';
import express from 'express';
import { createMesh } from 'meshlet';

const mesh = createMesh({
  service: 'users',
  // This file: the JSDoc below survives compilation, so the built file is read as it is.
  catalog: { openapiFiles: [fileURLToPath(import.meta.url)] },
});
const app = express();
app.use(mesh.express());

/**
 * @openapi
 * /users/{id}:
 *   get:
 *     operationId: getUser
 *     summary: One user
 */
app.get('/users/:id', (req, res) => {
  res.json({ id: req.params.id });
});

/**
 * @openapi
 * /users:
 *   post:
 *     operationId: createUser
 *     summary: Create a user
 */
app.post('/users', (_req, res) => {
  res.status(201).json({ created: true });
});

const server = app.listen(0, '127.0.0.1', async () => {
  const { port } = server.address() as { port: number };
  const instance = await mesh.register({ port });
  const base = `http://127.0.0.1:${port}`;

  const catalog = (await (await fetch(`${base}/meshlet/apis`)).json()) as { apis: { method: string; path: string; summary?: string }[] };
  for (const api of catalog.apis) console.log(`api: ${api.method} ${api.path} (${api.summary})`);
  console.log(`registered with apis-hash ${instance.metadata['apis-hash']}`);

  // One call a minute to GET /users/{id}, whatever the id: the rule names the template.
  await mesh.rules.apply(
    JSON.stringify({
      service: 'users',
      ratelimit: { rules: [{ name: 'one-user-a-minute', api: { method: 'GET', path: '/users/{id}' }, rate: 1, unit: 'minute', burst: 1 }] },
    }),
    { author: 'example' },
  );
  await mesh.rulesInForce('users');
  const statuses = [];
  for (const id of ['1', '2']) statuses.push((await fetch(`${base}/users/${id}`)).status);
  statuses.push((await fetch(`${base}/users`, { method: 'POST' })).status);
  console.log(`GET /users/1, GET /users/2, POST /users: ${statuses.join(', ')}`);

  server.close();
  await mesh.close();
});
