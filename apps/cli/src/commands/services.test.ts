import type { Service } from '../registry/registry-client';
import { table } from '../output';
import { serviceColumns } from './services';

const service = (name: string, mtls?: 'off' | 'permissive' | 'strict'): Service =>
  ({
    spec: { name, team: 'shop', protocol: 'grpc', port: 8080, dependencies: [], ...(mtls ? { mtls } : {}) },
    generation: 1,
    updated: { at: new Date().toISOString(), actor: 'admin' },
  }) as unknown as Service;

describe('trellis services ls', () => {
  it("shows each service's mTLS mode (absent is off)", () => {
    const lines = table([service('ledger', 'strict'), service('stock', 'permissive'), service('web')], serviceColumns).split('\n');
    expect(lines[0]).toMatch(/NAME\s+TEAM\s+PROTOCOL\s+PORT\s+MTLS\s+CALLS/);
    expect(lines[1]).toMatch(/^ledger\s+shop\s+grpc\s+8080\s+strict\s/);
    expect(lines[2]).toMatch(/^stock\s+shop\s+grpc\s+8080\s+permissive\s/);
    expect(lines[3]).toMatch(/^web\s+shop\s+grpc\s+8080\s+off\s/);
  });
});
