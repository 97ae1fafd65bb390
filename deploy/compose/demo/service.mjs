/* global fetch, AbortSignal -- Node 18+ globals; this script runs on plain node:24 */
// One demo mesh service behind its Envoy sidecar (they share a network namespace, with
// the service's trellis agent, which registers the instance and keeps it registered).
// The app listens on 127.0.0.1:APP_PORT, reachable only through the sidecar. Each
// request fans out to the service's dependencies through the sidecar's outbound
// listener (routing by Host, the mesh token added by ext_authz) and answers with the
// call tree.
import { createServer } from 'node:http';
import { hostname } from 'node:os';

const cfg = {
  service: required('SERVICE'),
  instanceId: process.env.INSTANCE_ID ?? hostname(),
  appPort: Number(process.env.APP_PORT ?? 9000),
  dependencies: (process.env.DEPENDENCIES ?? '').split(',').filter(Boolean),
  outbound: process.env.OUTBOUND_URL ?? 'http://127.0.0.1:15001',
};

function required(name) {
  if (!process.env[name]) {
    console.error(`demo: ${name} is required`);
    process.exit(2);
  }
  return process.env[name];
}

const log = (msg, fields = {}) => console.log(JSON.stringify({ time: new Date().toISOString(), service: cfg.service, msg, ...fields }));

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

server.listen(cfg.appPort, '127.0.0.1', () => log('listening', { appPort: cfg.appPort }));
// The agent drains the instance on stop; the app only has to finish what is in flight.
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
