// Creates a Secret once, in a Helm pre-install/pre-upgrade hook Job, so that `helm template`
// renders the same bytes every time (GitOps tools sync without rotating anything) while
// a plain `helm install` still gets its secrets. It runs on the app's own image (node, no
// shell) with nothing but node's standard library.
//
// An existing Secret is never changed, except that keys it lacks are added; a value is
// never replaced. Removing the Secret is the way to regenerate.
//
//   SECRET_NAME, SECRET_NAMESPACE  the Secret
//   SECRET_KEYS                    JSON {key: "rsa-4096-pem" | "random-48"}: what to generate
//   SECRET_LABELS                  JSON labels for a new Secret
//   KUBERNETES_API                 default https://kubernetes.default.svc (with the pod's CA)
// This file is kept byte-identical in every chart that generates a Secret (a deploy test checks).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const SA = '/var/run/secrets/kubernetes.io/serviceaccount';
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const GENERATORS = {
  'rsa-4096-pem': () =>
    generateKeyPairSync('rsa', { modulusLength: 4096, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } }).privateKey,
  'random-48': () => randomBytes(36).toString('base64url'),
};

function call(method, path, body) {
  const api = new URL(process.env.KUBERNETES_API ?? 'https://kubernetes.default.svc');
  const secure = api.protocol === 'https:';
  const token = process.env.KUBERNETES_TOKEN ?? readFileSync(`${SA}/token`, 'utf8').trim();
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = (secure ? httpsRequest : httpRequest)(
      new URL(path, api),
      {
        method,
        // A fresh connection per call: generating an RSA key between calls can outlast the
        // server's keep-alive, and a reused socket it just closed fails with "socket hang up".
        agent: false,
        ...(secure ? { ca: readFileSync(`${SA}/ca.crt`) } : {}),
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(payload ? { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' } : {}),
        },
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const fail = (what, res) => {
  throw new Error(`${what}: HTTP ${res.status} ${res.body.reason ?? ''} ${res.body.message ?? ''}`.trim());
};

async function main() {
  const name = env('SECRET_NAME');
  const namespace = env('SECRET_NAMESPACE');
  const wanted = JSON.parse(env('SECRET_KEYS'));
  const labels = JSON.parse(process.env.SECRET_LABELS ?? '{}');
  for (const [key, kind] of Object.entries(wanted)) if (!GENERATORS[kind]) throw new Error(`SECRET_KEYS.${key}: unknown generator ${kind}`);
  const generate = (keys) => Object.fromEntries(keys.map((k) => [k, Buffer.from(GENERATORS[wanted[k]]()).toString('base64')]));
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;

  for (let attempt = 0; attempt < 2; attempt++) {
    const found = await call('GET', `${path}/${encodeURIComponent(name)}`);
    if (found.status === 200) {
      const missing = Object.keys(wanted).filter((k) => !(k in (found.body.data ?? {})));
      if (missing.length === 0) return console.log(`Secret ${namespace}/${name} exists; left as it is`);
      const patched = await call('PATCH', `${path}/${encodeURIComponent(name)}`, { data: generate(missing) });
      if (patched.status !== 200) fail(`adding ${missing.join(', ')} to Secret ${namespace}/${name}`, patched);
      return console.log(`Secret ${namespace}/${name}: added ${missing.join(', ')}`);
    }
    if (found.status !== 404) fail(`reading Secret ${namespace}/${name}`, found);
    const created = await call('POST', path, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace, labels },
      type: 'Opaque',
      data: generate(Object.keys(wanted)),
    });
    if (created.status === 201) return console.log(`Secret ${namespace}/${name} created with ${Object.keys(wanted).join(', ')}`);
    if (created.status !== 409) fail(`creating Secret ${namespace}/${name}`, created);
    // 409: another hook run created it in between; read it again.
  }
  throw new Error(`Secret ${namespace}/${name} kept appearing and disappearing`);
}

main().catch((error) => {
  console.error(`ensure-secret: ${error.message}`);
  process.exit(1);
});
