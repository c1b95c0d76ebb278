import { type ArgumentsHost, Catch, type ExceptionFilter, Inject } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { AuthDeniedError, governedErrorAnswer, type Mesh, RateLimitedError } from 'meshlet';
import { MESH } from './tokens.js';

/**
 * Answers a limit or an auth rule a handler or a service method threw (`@RateLimit`,
 * `@Authorize`) with the same 429 (with `Retry-After`) or 403 and JSON body as the
 * service's own rules, on Express and Fastify alike. Installed globally by MeshletModule.
 */
@Catch(RateLimitedError, AuthDeniedError)
export class MeshletExceptionFilter implements ExceptionFilter {
  constructor(
    @Inject(MESH) private readonly mesh: Mesh,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  catch(error: RateLimitedError | AuthDeniedError, host: ArgumentsHost): void {
    const answer = governedErrorAnswer(error, this.mesh.service);
    const adapter = this.adapterHost.httpAdapter;
    if (!answer || host.getType() !== 'http') throw error;
    const response: unknown = host.switchToHttp().getResponse();
    for (const [name, value] of Object.entries(answer.headers)) adapter.setHeader(response, name, value);
    adapter.reply(response, answer.body, answer.status);
  }
}
