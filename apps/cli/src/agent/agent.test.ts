// The agent's decisions against an in-memory registry and a health check the test
// flips; the end-to-end suite (tools/local-mesh) runs it against the real mesh.
import { createLogger } from '@trellis/runtime';
import { eventually } from '@trellis/testing';
import { Registry } from 'prom-client';
import { Agent } from './agent';
import type { HealthProbe, ProbeResult } from './health-probe';
import { createAgentMetrics } from './metrics';
import { RegistryError, type InstanceRegistrar } from './registrar';

class FakeRegistry implements InstanceRegistrar {
  registered = false;
  draining = false;
  /** Calls fail with this while set (an outage). */
  outage: Error | undefined;
  readonly calls: string[] = [];

  private call(op: string): void {
    this.calls.push(op);
    if (this.outage) throw this.outage;
  }
  async register() {
    this.call('register');
    this.registered = true;
    this.draining = false;
    return {
      service: 'orders',
      id: 'i-1',
      address: '10.0.0.1',
      port: 80,
      labels: {},
      locality: { region: '', zone: '', subZone: '' },
      platform: 'vm' as const,
      weight: 1,
      registeredAt: new Date().toISOString(),
    };
  }
  async heartbeat() {
    this.call('heartbeat');
    return this.registered ? ('ok' as const) : ('lost' as const);
  }
  async drain() {
    this.call('drain');
    if (!this.registered) return 'lost' as const;
    this.draining = true;
    return 'ok' as const;
  }
  async deregister() {
    this.call('deregister');
    const was = this.registered;
    this.registered = false;
    return was;
  }
}

class FlippableProbe implements HealthProbe {
  result: ProbeResult = { healthy: false, reason: 'starting' };
  async check() {
    return this.result;
  }
  close() {}
}

// Generous: a loaded machine is slow, not wrong; the wait ends as soon as the condition holds. Polled often, as
// some states (draining) last only the agent's short drain.
const until = (what: string, condition: () => boolean) => eventually(what, condition, 60_000, { intervalMs: 10 });

function startAgent(registry: FakeRegistry, probe: FlippableProbe, drainMs = 50) {
  const agent = new Agent({
    service: 'orders',
    instanceId: 'i-1',
    registrar: registry,
    probe,
    health: { intervalMs: 10, timeoutMs: 100, failureThreshold: 3, successThreshold: 1 },
    heartbeatIntervalMs: 20,
    drainMs,
    retry: { baseMs: 5, maxMs: 20 },
    logger: createLogger('agent-test', 'silent'),
    metrics: createAgentMetrics(new Registry()),
  });
  agent.start();
  return agent;
}

describe('Agent', () => {
  it('registers only once healthy, withdraws after N failed checks, and comes back on recovery', async () => {
    const registry = new FakeRegistry();
    const probe = new FlippableProbe();
    const agent = startAgent(registry, probe);
    await new Promise((r) => setTimeout(r, 100));
    expect(registry.calls).toEqual([]);
    expect(agent.state).toBe('waiting-for-health');

    probe.result = { healthy: true };
    await until('registered', () => registry.registered);
    await until('heartbeats', () => registry.calls.filter((c) => c === 'heartbeat').length >= 2);
    expect(agent.serving).toBe(true);

    probe.result = { healthy: false, reason: 'down' };
    await until('withdrawn', () => !registry.registered);
    expect(agent.state).toBe('withdrawn');

    probe.result = { healthy: true };
    await until('registered again', () => registry.registered);
    expect(registry.calls.filter((c) => c === 'register')).toHaveLength(2);
    await agent.stop();
  });

  it('keeps retrying through an outage and registers again when the lease was lost', async () => {
    const registry = new FakeRegistry();
    const probe = new FlippableProbe();
    probe.result = { healthy: true };
    const agent = startAgent(registry, probe);
    await until('registered', () => registry.registered);

    registry.outage = new Error('fetch failed: ECONNREFUSED');
    const before = registry.calls.length;
    await until('several failed attempts', () => registry.calls.length >= before + 5);
    // The lease ran out meanwhile; the registry is back.
    registry.registered = false;
    registry.outage = undefined;
    await until('registered again', () => registry.registered);
    expect(agent.state).toBe('registered');

    // A refusal (a rotated credential) is retried too, not fatal.
    registry.outage = new RegistryError(401, 'heartbeat orders/i-1');
    const refusedAt = registry.calls.length;
    await until('retried after a refusal', () => registry.calls.length >= refusedAt + 3);
    registry.outage = undefined;
    await until('heartbeating again', () => registry.calls.at(-1) === 'heartbeat' && !registry.outage);
    await agent.stop();
  });

  it('drains: marks the instance draining, keeps heartbeating through the drain period, then deregisters', async () => {
    const registry = new FakeRegistry();
    const probe = new FlippableProbe();
    probe.result = { healthy: true };
    const agent = startAgent(registry, probe, 300);
    await until('registered', () => registry.registered);

    const drained = agent.drain();
    await until('draining', () => registry.draining);
    expect(agent.state).toBe('draining');
    // Health failures during the drain do not withdraw it early.
    probe.result = { healthy: false, reason: 'app stopping' };
    const heartbeatsBefore = registry.calls.filter((c) => c === 'heartbeat').length;
    await until('heartbeats while draining', () => registry.calls.filter((c) => c === 'heartbeat').length > heartbeatsBefore);
    expect(registry.registered).toBe(true);
    await drained;
    expect(registry.registered).toBe(false);
    expect(registry.calls.at(-1)).toBe('deregister');
    expect(agent.state).toBe('stopped');
  });

  it('stops at once on a drain before it ever registered', async () => {
    const registry = new FakeRegistry();
    const agent = startAgent(registry, new FlippableProbe(), 60_000);
    await agent.drain();
    expect(registry.calls).toEqual([]);
  });
});
