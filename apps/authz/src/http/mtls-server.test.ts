import { Agent, request } from 'node:https';
import express from 'express';
import { closeHttpServer, createLogger } from '@trellis/runtime';
import { ServingTls, tlsFilesSource } from '@trellis/runtime/grpc';
import { createTestPki, postJson, recordRequestPrototypes, type TestPki } from '@trellis/testing';
import { listenMtls } from './mtls-server';

describe('listenMtls with an express app', () => {
  let pki: TestPki;
  let tls: ServingTls;
  beforeAll(async () => {
    pki = createTestPki();
    tls = await ServingTls.start(tlsFilesSource({ certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCa: pki.caFile }), {
      name: 'authz',
      logger: createLogger('authz', 'silent'),
    });
  });
  afterAll(() => pki?.remove());

  it("makes each request and response with the app's own prototypes, so express has none to change, and the app answers as before", async () => {
    const app = express();
    app.use(express.json());
    app.post('/v1/things/:id', (req, res) => {
      res
        .status(201)
        .set('x-seen', String(req.get('x-sent')))
        .json({ id: req.params.id, body: req.body as unknown, clientAuthorized: (req.socket as { authorized?: boolean }).authorized });
    });
    const { server, port } = await listenMtls(app, tls, { host: '127.0.0.1', port: 0, requireClientCertificate: true });
    const prototypes = recordRequestPrototypes(server);
    const client = pki.client('orders');
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: pki.ca, cert: client.cert, key: client.key });
    try {
      for (let i = 0; i < 2; i++) {
        const answer = await postJson(
          request,
          { host: '127.0.0.1', port, path: `/v1/things/t${i}`, agent, headers: { 'x-sent': `v${i}` } },
          { n: i },
          'x-seen',
        );
        expect(answer).toEqual({
          status: 201,
          header: `v${i}`,
          body: JSON.stringify({ id: `t${i}`, body: { n: i }, clientAuthorized: true }),
        });
      }
      expect(prototypes).toHaveLength(2);
      for (const { request: requestPrototype, response: responsePrototype } of prototypes) {
        expect(requestPrototype).toBe(app.request);
        expect(responsePrototype).toBe(app.response);
      }
    } finally {
      agent.destroy();
      await closeHttpServer(server, 1_000);
    }
  });
});
