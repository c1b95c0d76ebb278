import { type Server, type ServerUnaryCall, type ServiceDefinition, status as Status, type sendUnaryData } from '@grpc/grpc-js';

/** The path prefix of the standard gRPC health service; the server interceptor does not govern it. */
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** grpc.health.v1.HealthCheckResponse.ServingStatus. */
export const ServingStatus = { SERVING: 1, NOT_SERVING: 2 } as const;

// HealthCheckRequest { string service = 1; } and HealthCheckResponse { ServingStatus status = 1; },
// read and written by hand: two one-field messages do not need protobufjs and a .proto file.
// An object, not the bare string: grpc-js takes a falsy request as "no request message",
// and Consul's check sends the empty message (service "").
function decodeRequest(buf: Buffer): { service: string } {
  return { service: decodeService(buf) };
}

function decodeService(buf: Buffer): string {
  let i = 0;
  let service = '';
  while (i < buf.length) {
    const key = buf[i++] as number;
    const wire = key & 7;
    if (wire === 0) {
      while (i < buf.length && ((buf[i++] as number) & 0x80) !== 0);
    } else if (wire === 2) {
      let len = 0;
      for (let shift = 0; i < buf.length; shift += 7) {
        const b = buf[i++] as number;
        len |= (b & 0x7f) << shift;
        if ((b & 0x80) === 0 || shift > 21) break;
      }
      if (key >>> 3 === 1) service = buf.toString('utf8', i, i + len);
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
  return service;
}

const encodeStatus = (s: number): Buffer => Buffer.from([0x08, s]);

export const healthServiceDefinition: ServiceDefinition = {
  Check: {
    path: `/${HEALTH_SERVICE}/Check`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (r: { service: string }) =>
      r.service ? Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(r.service)]), Buffer.from(r.service)]) : Buffer.alloc(0),
    requestDeserialize: decodeRequest,
    responseSerialize: encodeStatus,
    responseDeserialize: (b: Buffer) => b[1] ?? 0,
  },
};

/**
 * Adds the standard gRPC health service (`grpc.health.v1.Health/Check`, what Consul's GRPC
 * check and Kubernetes' grpc probe call) to `server`: SERVING for the whole server (`""`)
 * and the names in `services`, NOT_SERVING once `stopping()` says so, NOT_FOUND for other
 * names. False when the server already has a health service (the application's own wins).
 */
export function addHealthService(server: Server, stopping: () => boolean, services: readonly string[] = []): boolean {
  const known = new Set(['', ...services]);
  try {
    server.addService(healthServiceDefinition, {
      Check(call: ServerUnaryCall<{ service: string }, number>, done: sendUnaryData<number>) {
        const name = call.request.service;
        if (!known.has(name)) return done({ code: Status.NOT_FOUND, details: `unknown service ${name}` });
        done(null, stopping() ? ServingStatus.NOT_SERVING : ServingStatus.SERVING);
      },
    });
    return true;
  } catch {
    return false;
  }
}
