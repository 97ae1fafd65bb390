// One demo mesh service behind its Envoy sidecar (they share a network namespace).
// It registers its instance with the registry (address = this container, port =
// the sidecar's inbound listener) and heartbeats; the app itself listens on
// 127.0.0.1:APP_PORT, reachable only through the sidecar. Each request fans out to
// the service's dependencies through the sidecar's outbound listener (routing by
// Host, the mesh token added by ext_authz) and answers with the call tree.
import { createServer } from 'node:http';
import { hostname, networkInterfaces } from 'node:os';

const cfg = {
  service: required('SERVICE'),
  instanceId: process.env.INSTANCE_ID ?? hostname(),
  meshPort: Number(process.env.MESH_PORT ?? 8080),
  appPort: Number(process.env.APP_PORT ?? 9000),
  dependencies: (process.env.DEPENDENCIES ?? '').split(',').filter(Boolean),
  outbound: process.env.OUTBOUND_URL ?? 'http://127.0.0.1:15001',
  registry: process.env.REGISTRY_URL ?? 'http://registry:8080',
  token: required('REGISTRY_TOKEN'),
  ttlSeconds: 15,
};

function required(name) {
  if (!process.env[name]) {
    console.error(`demo: ${name} is required`);
    process.exit(2);
  }
  return process.env[name];
}

const log = (msg, fields = {}) => console.log(JSON.stringify({ time: new Date().toISOString(), service: cfg.service, msg, ...fields }));

function containerAddress() {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('no non-loopback IPv4 address');
}

async function registry(method, path, body) {
  return fetch(`${cfg.registry}/api/v1/services/${cfg.service}/instances${path}`, {
    method,
    headers: { authorization: `Bearer ${cfg.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(3000),
  });
}

async function register() {
  const body = {
    id: cfg.instanceId,
    address: containerAddress(),
    port: cfg.meshPort,
    platform: 'vm',
    labels: { demo: 'compose' },
    ttlSeconds: cfg.ttlSeconds,
  };
  for (;;) {
    const res = await registry('POST', '', body).catch((err) => ({ ok: false, status: 0, text: async () => String(err) }));
    if (res.ok) return log('registered', { address: body.address, port: body.port });
    log('registration failed; retrying', { status: res.status, detail: await res.text() });
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function callDependency(dep) {
  const started = Date.now();
  try {
    const res = await fetch(`${cfg.outbound}/`, { headers: { host: dep }, signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { service: dep, status: res.status, ms: Date.now() - started, reply: body };
  } catch (err) {
    return { service: dep, status: 0, ms: Date.now() - started, error: String(err) };
  }
}

const server = createServer(async (req, res) => {
  const calls = await Promise.all(cfg.dependencies.map(callDependency));
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ service: cfg.service, instance: cfg.instanceId, path: req.url, calls }));
});

server.listen(cfg.appPort, '127.0.0.1', async () => {
  log('listening', { appPort: cfg.appPort });
  await register();
  const heartbeat = setInterval(
    async () => {
      const res = await registry('PUT', `/${cfg.instanceId}/heartbeat`).catch(() => undefined);
      if (res?.status === 404) await register();
    },
    (cfg.ttlSeconds * 1000) / 3,
  );
  const stop = async () => {
    clearInterval(heartbeat);
    await registry('DELETE', `/${cfg.instanceId}`).catch(() => undefined);
    server.close(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
});
