// A NestJS service in the mesh: MeshletModule, decorators on a controller and a provider,
// @nestjs/axios's HttpService governed by the axios adapter.

import { InjectMesh, MESH, MeshletModule } from '@meshlet/nestjs';
import { HttpModule, HttpService } from '@nestjs/axios';
import { Controller, Get, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { CircuitBreaker, getTag, type Mesh, RateLimit, Traced } from 'meshlet';
import { axiosAdapter } from 'meshlet/axios';
import { firstValueFrom } from 'rxjs';

@Injectable()
export class UsersClient {
  constructor(private readonly http: HttpService) {}

  // A breaker of its own around the method, on top of the mesh's rules for user-service.
  @CircuitBreaker({ consecutiveFailures: 5 })
  @Traced('users.get')
  async user(id: string): Promise<string> {
    const res = await firstValueFrom(this.http.get<string>(`http://user-service/api/users/${id}`));
    return res.data;
  }
}

@Controller('orders')
export class OrdersController {
  constructor(private readonly users: UsersClient) {}

  @Get()
  @RateLimit({ name: 'orders-list', rate: 2, unit: 'minute', burst: 2 })
  async list(): Promise<{ tier: string | null; user: string }> {
    return { tier: getTag('user-tier') ?? null, user: await this.users.user('42') };
  }
}

@Injectable()
export class ShutdownReport implements OnApplicationShutdown {
  constructor(@InjectMesh() private readonly mesh: Mesh) {}

  async onApplicationShutdown(signal?: string): Promise<void> {
    const left = await this.mesh.registry.healthyInstances(this.mesh.service);
    console.log(`stopped on ${signal}: ${left.length} instance(s) of ${this.mesh.service} registered`);
  }
}

@Module({
  imports: [
    MeshletModule.forRoot({ service: 'orders', version: '1.0.0' }),
    HttpModule.registerAsync({ inject: [MESH], useFactory: (mesh: Mesh) => ({ adapter: axiosAdapter(mesh) }) }),
  ],
  controllers: [OrdersController],
  providers: [UsersClient, ShutdownReport],
})
export class AppModule {}
