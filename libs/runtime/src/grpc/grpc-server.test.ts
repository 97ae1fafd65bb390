import { credentials, makeGenericClientConstructor, Server, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { bindGrpcServer, serveGrpcHealth, stopGrpcServer } from './grpc-server';
import { Health } from '../health';

interface HealthClient {
  Check(req: { service: string }, cb: (err: ServiceError | null, res: { status: string }) => void): void;
  close(): void;
}

const HealthClientCtor = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');

function healthClient(port: number): { client: HealthClient; status: (service: string) => Promise<string> } {
  const client = new HealthClientCtor(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as HealthClient;
  const status = (service: string) =>
    new Promise<string>((resolve, reject) => client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res.status))));
  return { client, status };
}

describe('serveGrpcHealth', () => {
  it('answers SERVING exactly while readiness holds, for the server and each named service', async () => {
    const health = new Health();
    let dependencyUp = false;
    health.addCheck('dependency', () => dependencyUp);
    const server = new Server();
    serveGrpcHealth(server, health, ['example.v1.Thing']);
    const port = await bindGrpcServer(server, '127.0.0.1', 0);
    const { client, status } = healthClient(port);
    try {
      expect(await status('')).toBe('NOT_SERVING');
      expect(await status('example.v1.Thing')).toBe('NOT_SERVING');
      dependencyUp = true;
      await health.recheck(); // what the owner of the dependency does when it comes up
      expect(await status('')).toBe('SERVING');
      expect(await status('example.v1.Thing')).toBe('SERVING');
      health.startDraining();
      expect(await status('example.v1.Thing')).toBe('NOT_SERVING');
      await expect(status('not.a.Service')).rejects.toMatchObject({ code: 5 }); // NOT_FOUND
    } finally {
      client.close();
      await stopGrpcServer(server, 1_000);
    }
  });

  it('starts SERVING when readiness was already known before the server started', async () => {
    const health = new Health();
    await health.recheck();
    const server = new Server();
    serveGrpcHealth(server, health, []);
    const port = await bindGrpcServer(server, '127.0.0.1', 0);
    const { client, status } = healthClient(port);
    try {
      expect(await status('')).toBe('SERVING');
    } finally {
      client.close();
      await stopGrpcServer(server, 1_000);
    }
  });
});

describe('bindGrpcServer / stopGrpcServer', () => {
  it('rejects a port already bound, and stops a server so its port refuses calls', async () => {
    const server = new Server();
    serveGrpcHealth(server, new Health(), []);
    const port = await bindGrpcServer(server, '127.0.0.1', 0);
    const other = new Server();
    await expect(bindGrpcServer(other, '127.0.0.1', port)).rejects.toThrow();
    other.forceShutdown();
    await stopGrpcServer(server, 1_000);
    const { client, status } = healthClient(port);
    try {
      await expect(status('')).rejects.toMatchObject({ code: 14 }); // UNAVAILABLE
    } finally {
      client.close();
    }
  });

  it('binds an IPv6 literal', async () => {
    const server = new Server();
    serveGrpcHealth(server, new Health(), []);
    try {
      expect(await bindGrpcServer(server, '::1', 0)).toBeGreaterThan(0);
    } catch (err) {
      // A host without IPv6 loopback cannot run this case; the bracketing is what is under test.
      if (!/EADDRNOTAVAIL|EAFNOSUPPORT/.test(String(err))) throw err;
    } finally {
      await stopGrpcServer(server, 1_000);
    }
  });
});
