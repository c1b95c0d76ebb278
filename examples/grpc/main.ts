// gRPC governed like HTTP, kept runnable: `npm run build && node examples/dist/grpc/main.js`.
// A gRPC service and a gateway that calls it by name; the tag the gateway sets travels in
// metadata, the call is routed by the mesh's rules, and the service stops gracefully.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createMesh, getTag, setTag, withTags } from 'meshlet';

const proto = [resolve(import.meta.dirname, 'users.proto'), resolve(import.meta.dirname, '../../grpc/users.proto')].find(existsSync);
const { example } = grpc.loadPackageDefinition(protoLoader.loadSync(proto as string, { keepCase: true })) as unknown as {
  example: { users: { Users: grpc.ServiceClientConstructor } };
};
const Users = example.users.Users;

// The service: the mesh's server interceptor gives the handler the caller's tags.
const users = createMesh({ service: 'user-service', version: '1.21.0' });
const server = new grpc.Server({ interceptors: [users.grpc.serverInterceptor()] });
server.addService(Users.service, {
  GetUser(call: grpc.ServerUnaryCall<{ id: string }, unknown>, done: grpc.sendUnaryData<unknown>) {
    done(null, { id: call.request.id, tier: getTag('user-tier') ?? 'none', served_by: 'user-service@1.21.0' });
  },
});
const port = await new Promise<number>((ok, fail) =>
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? fail(err) : ok(p))),
);
await users.grpc.serve(server, port); // registers the gRPC port (Meta gRPC_port, as grpc-spring does)

// The gateway: a client by service name; routing, breakers, retries and deadlines are the mesh's.
const gateway = createMesh({ service: 'gateway', version: '1.0.0' });
const client = gateway.grpc.client(Users, 'user-service');
const user = await withTags({}, () => {
  setTag('user-tier', 'vip');
  return new Promise<Record<string, string> | undefined>((ok, fail) =>
    client.GetUser?.({ id: '42' }, { deadline: Date.now() + 5_000 }, (err: grpc.ServiceError | null, u?: Record<string, string>) =>
      err ? fail(err) : ok(u),
    ),
  );
});
console.log(`user ${user?.id} tier=${user?.tier} from ${user?.served_by}`); // user 42 tier=vip from user-service@1.21.0

// Graceful stop: deregister, stop accepting, let calls in flight finish.
client.close();
console.log(`drained: ${await users.grpc.shutdown()}`);
await gateway.close();
await users.close();
