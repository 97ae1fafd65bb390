// The assembled control plane over a real etcd, driven by a raw ADS client:
// NACK handling as people see it (etcd status, metrics), replica determinism,
// stream authentication and the HTTP side.
import { createHash, createPublicKey, generateKeyPairSync, randomUUID, verify } from 'node:crypto';
import { credentials, makeGenericClientConstructor, Metadata, status as GrpcStatus, type ServiceDefinition } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { TypeUrl } from '@trellis/envoy-types';
import { XDS_TOKEN_AUDIENCE } from '@trellis/mesh-schema';
import { Node } from '@trellis/envoy-types/envoy/config/core/v3/base';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { OUTBOUND_HTTP_NAME } from '../src/envoy/names';
import { AdsTestClient, testNode } from './support/ads-client';
import { eventually, startControlPlaneHarness, type ControlPlaneHarness } from './support/control-plane-harness';

jest.setTimeout(120_000);

describe('control plane over etcd', () => {
  let h: ControlPlaneHarness;
  const clients: AdsTestClient<'sotw'>[] = [];
  const open = (address: string, metadata?: Metadata) => {
    const c = AdsTestClient.open(address, 'sotw', metadata);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    h = await startControlPlaneHarness();
    await h.store.createService({ name: 'b', team: 'core', protocol: 'http', port: 8080 }, 'test');
    await h.store.createService({ name: 'c', team: 'core', protocol: 'http', port: 8080 }, 'test');
    await h.store.createService({ name: 'a', team: 'core', protocol: 'http', port: 8080, dependencies: [{ service: 'b' }] }, 'test');
    await h.store.registerInstance({ service: 'b', id: 'b-1', address: '10.0.0.1', port: 8080, platform: 'vm' }, 30);
    await eventually('the model to hold the setup', () => (h.cp.model()?.services.get('b')?.localities.length ? true : undefined));
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => {
    await h?.stop();
  });

  const metric = async (name: string): Promise<string> => {
    const text = await (await fetch(`${h.httpUrl}/metrics`)).text();
    return text
      .split('\n')
      .filter((l) => l.startsWith(name))
      .join('\n');
  };

  it('holds a NACKed version back, records the rejection, and sends the next good version', async () => {
    const client = open(h.xdsAddress);
    client.send({ node: testNode('a', 'a-envoy-nack'), typeUrl: TypeUrl.Cluster });
    const cds = await client.next();
    client.nack(TypeUrl.Cluster, cds, '', 'Proto constraint validation failed (test)');
    // No resend storm: nothing at all within the next seconds, even across an unrelated rebuild.
    await h.store.registerInstance({ service: 'c', id: 'c-1', address: '10.0.0.3', port: 8080, platform: 'vm' }, 30);
    expect(await client.drain(1500)).toEqual([]);

    const status = await eventually('NACK in the proxy status', async () => {
      const [s] = await h.store.listProxyStatuses('a');
      return s?.types.cds?.lastNack ? s : undefined;
    });
    expect(status.types.cds!.lastNack).toMatchObject({ version: cds.versionInfo, error: 'Proto constraint validation failed (test)' });
    expect(status.meshRevision).toBeDefined();
    expect(await metric('trellis_control_plane_xds_rejects_total{type="cds"}')).toMatch(/ 1$/);

    // A change that touches a's config: the new version goes out.
    const a = (await h.store.getService('a'))!.value.spec;
    await h.store.updateService({ ...a, dependencies: [{ service: 'b' }, { service: 'c' }] }, 'test');
    const next = await client.next();
    expect(next.typeUrl).toBe(TypeUrl.Cluster);
    expect(next.versionInfo).not.toBe(cds.versionInfo);
    client.ack(TypeUrl.Cluster, next);
    await eventually('ACK in the proxy status', async () => {
      const [s] = await h.store.listProxyStatuses('a');
      return s?.types.cds?.lastAckedVersion === next.versionInfo ? s : undefined;
    });
    expect(await metric('trellis_control_plane_proxy_convergence_seconds_count{type="cds"}')).toMatch(/ [1-9]\d*$/);
  });

  it('gives a proxy the same versions on another replica, so moving over brings nothing new: the answers repeat what it holds', async () => {
    const first = open(h.xdsAddress);
    first.send({ node: testNode('a', 'a-envoy-move'), typeUrl: TypeUrl.Cluster });
    const cds = await first.next();
    first.ack(TypeUrl.Cluster, cds);
    first.send({ typeUrl: TypeUrl.Listener });
    const lds = await first.next();

    const replica = await startControlPlaneHarness({ TRELLIS_CONTROL_PLANE_ID: 'cp-replica' }, undefined, h.etcd);
    try {
      await eventually('replica snapshot', () => replica.cp.cache.ready || undefined);
      const moved = open(replica.xdsAddress);
      moved.send({ node: testNode('a', 'a-envoy-move'), typeUrl: TypeUrl.Cluster, versionInfo: cds.versionInfo });
      moved.send({ typeUrl: TypeUrl.Listener, versionInfo: lds.versionInfo });
      // Each re-subscription is answered (it confirms the new stream), at the version the proxy already holds.
      const cdsAgain = await moved.next();
      expect(cdsAgain).toMatchObject({ typeUrl: TypeUrl.Cluster, versionInfo: cds.versionInfo, resources: cds.resources });
      moved.ack(TypeUrl.Cluster, cdsAgain);
      const ldsAgain = await moved.next();
      expect(ldsAgain).toMatchObject({ typeUrl: TypeUrl.Listener, versionInfo: lds.versionInfo, resources: lds.resources });
      moved.ack(TypeUrl.Listener, ldsAgain);
      expect(await moved.drain(600)).toEqual([]);
    } finally {
      await replica.stop();
    }
  });

  it('serves Delta xDS from the same snapshots, resource by resource', async () => {
    const delta = AdsTestClient.open(h.xdsAddress, 'delta');
    try {
      delta.send({ node: testNode('a', 'a-envoy-delta'), typeUrl: TypeUrl.Cluster });
      const cds = await delta.next();
      expect(cds.resources.map((r) => r.name)).toEqual(expect.arrayContaining(['outbound|b']));
      delta.send({ typeUrl: TypeUrl.Cluster, responseNonce: cds.nonce });
      delta.send({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNamesSubscribe: ['outbound|b'] });
      const eds = await delta.next();
      expect(eds.resources.map((r) => r.name)).toEqual(['outbound|b']);
      delta.send({ typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: eds.nonce });
      // An endpoint change sends just that one resource.
      await h.store.registerInstance({ service: 'b', id: 'b-2', address: '10.0.0.2', port: 8080, platform: 'vm' }, 30);
      const update = await delta.next();
      expect(update.typeUrl).toBe(TypeUrl.ClusterLoadAssignment);
      expect(update.resources.map((r) => r.name)).toEqual(['outbound|b']);
      expect(update.resources[0]!.version).not.toBe(eds.resources[0]!.version);
    } finally {
      delta.close();
    }
  });

  it('answers the first Delta CDS and LDS request of a sidecar whose service has no dependencies, at once', async () => {
    // What Envoy does at start on a Delta ADS stream: wildcard CDS, and LDS only once CDS is
    // answered (its cluster manager initialises first); without an answer it waits out
    // initial_fetch_timeout (15 s) per type. Service c calls nothing: no cluster at all.
    const delta = AdsTestClient.open(h.xdsAddress, 'delta');
    try {
      delta.send({ node: testNode('c', 'c-envoy-delta'), typeUrl: TypeUrl.Cluster });
      const cds = await delta.next();
      expect(cds).toMatchObject({ typeUrl: TypeUrl.Cluster, resources: [], removedResources: [] });
      expect(cds.nonce).not.toBe('');
      delta.send({ typeUrl: TypeUrl.Cluster, responseNonce: cds.nonce });
      delta.send({ typeUrl: TypeUrl.Listener });
      const lds = await delta.next();
      expect(lds.typeUrl).toBe(TypeUrl.Listener);
      expect(lds.resources.map((r) => r.name)).toEqual(['inbound|c']);
      delta.send({ typeUrl: TypeUrl.Listener, responseNonce: lds.nonce });
      delta.send({ typeUrl: TypeUrl.RouteConfiguration, resourceNamesSubscribe: ['inbound|c'] });
      const rds = await delta.next();
      expect(rds.resources.map((r) => r.name)).toEqual(['inbound|c']);
      delta.send({ typeUrl: TypeUrl.RouteConfiguration, responseNonce: rds.nonce });
      // Answered once; an ACKed empty type stays quiet.
      expect(await delta.drain(500)).toEqual([]);
    } finally {
      delta.close();
    }
  });

  it('sent only resources that decode with the generated types and satisfy validate.rules', () => {
    expect(h.emitted.checked).toBeGreaterThan(3);
    expect(h.emitted.problems).toEqual([]);
  });

  describe('stream authentication (insecure clients not allowed)', () => {
    let secure: ControlPlaneHarness;
    let sign: (claims: { sub: string; aud?: string; issuedAt?: number; expiresAt?: number | null }) => Promise<string>;

    beforeAll(async () => {
      const { privateKey, publicKey } = await generateKeyPair('RS256');
      const jwk = await exportJWK(publicKey);
      const now = new Date().toISOString();
      await h.store.putAuthzKey({
        kid: 'k1',
        jwk: { kty: 'RSA', kid: 'k1', alg: 'RS256', use: 'sig', n: jwk.n!, e: jwk.e! },
        publishedAt: now,
        activeFrom: now,
      });
      // Shaped as authz's POST /v1/token {"audience":"trellis-xds"} mints it (authz's own tests cover that side).
      sign = ({ sub, aud = XDS_TOKEN_AUDIENCE, issuedAt = Math.floor(Date.now() / 1000), expiresAt = issuedAt + 900 }) => {
        const jwt = new SignJWT({})
          .setProtectedHeader({ alg: 'RS256', kid: 'k1', typ: 'JWT' })
          .setIssuer('trellis')
          .setSubject(sub)
          .setAudience(aud)
          .setIssuedAt(issuedAt)
          .setJti(randomUUID());
        return (expiresAt === null ? jwt : jwt.setExpirationTime(expiresAt)).sign(privateKey);
      };
      secure = await startControlPlaneHarness(
        {
          TRELLIS_XDS_ALLOW_INSECURE_CLIENTS: false,
          TRELLIS_CONTROL_PLANE_ID: 'cp-secure',
          TRELLIS_ADMIN_TOKEN: 'cp-admin-token-0123456789',
        },
        undefined,
        h.etcd,
      );
      await eventually('authz key mirrored', () => secure.cp.watcher.state.authzKeys.has('k1') || undefined);
    });
    afterAll(async () => {
      await secure?.stop();
    });

    const bearer = (token: string) => {
      const md = new Metadata();
      md.set('authorization', `Bearer ${token}`);
      return md;
    };

    it('refuses a client without credentials', async () => {
      const client = open(secure.xdsAddress);
      client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
      const closed = await client.closedWith();
      expect(closed.code).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(closed.details).toMatch(/no credentials/);
    });

    it('refuses an xDS token of a presented on a stream whose node.cluster is b', async () => {
      const client = open(secure.xdsAddress, bearer(await sign({ sub: 'a' })));
      client.send({ node: testNode('b'), typeUrl: TypeUrl.Cluster });
      const closed = await client.closedWith();
      expect(closed.code).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(closed.details).toMatch(/does not match node.cluster "b"/);
    });

    it('refuses a mesh token (a calling b), which is not an xDS token', async () => {
      const client = open(secure.xdsAddress, bearer(await sign({ sub: 'a', aud: 'b' })));
      client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
      const closed = await client.closedWith();
      expect(closed.code).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(closed.details).toMatch(/invalid token: wrong-audience/);
    });

    it('refuses an xDS token past its lifetime: a reconnect needs a fresh one', async () => {
      const client = open(secure.xdsAddress, bearer(await sign({ sub: 'a', issuedAt: Math.floor(Date.now() / 1000) - 1000 })));
      client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
      expect((await client.closedWith()).details).toMatch(/invalid token: expired/);
    });

    it.each([
      ['without exp', { expiresAt: null }, /invalid token: invalid-claims: .*"exp"/],
      ['issued 10 years in the future', { issuedAt: Math.floor(Date.now() / 1000) + 10 * 365 * 86_400 }, /invalid token: not-yet-valid/],
      ['valid for 100 years', { expiresAt: Math.floor(Date.now() / 1000) + 100 * 365 * 86_400 }, /invalid token: invalid-claims: lifetime/],
      ['naming no service ("a\\nb")', { sub: 'a\nb' }, /invalid token: invalid-claims: sub must be a service name/],
    ])('attack (#12 point 5): refuses an xDS token %s', async (_what, claims, reason) => {
      const client = open(secure.xdsAddress, bearer(await sign({ sub: 'a', ...claims })));
      client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
      const closed = await client.closedWith();
      expect(closed.code).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(closed.details).toMatch(reason);
    });

    it('attack (#12 point 3): a key with e = 1 written into etcd is dropped, so its "signature" of an xDS token opens no stream', async () => {
      // With e = 1, s^e mod n = s: the PKCS#1 v1.5 encoding of the hash is its own signature.
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const n = publicKey.export({ format: 'jwk' }).n!;
      const kid = 'attacker-e1';
      const now = Math.floor(Date.now() / 1000);
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const claims = { iss: 'trellis', sub: 'a', aud: XDS_TOKEN_AUDIENCE, iat: now, exp: now + 600 };
      const signingInput = `${encode({ alg: 'RS256', kid, typ: 'JWT' })}.${encode(claims)}`;
      const digestInfo = Buffer.concat([
        Buffer.from('3031300d060960864801650304020105000420', 'hex'),
        createHash('sha256').update(signingInput).digest(),
      ]);
      const encoded = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(256 - 3 - digestInfo.length, 0xff), Buffer.from([0]), digestInfo]);
      const forged = `${signingInput}.${encoded.toString('base64url')}`;
      // The forgery is real: a verifier that trusts the key accepts it.
      expect(
        verify('sha256', Buffer.from(signingInput), createPublicKey({ key: { kty: 'RSA', n, e: 'AQ' }, format: 'jwk' }), encoded),
      ).toBe(true);
      // Written past authz (anyone with write access to authz/keys/), then a good key after it: once that one is
      // mirrored, the control plane has read the weak one too.
      const at = new Date(Date.now() - 60_000).toISOString();
      const weak = { kid, jwk: { kty: 'RSA', kid, alg: 'RS256', use: 'sig', n, e: 'AQ' }, publishedAt: at, activeFrom: at };
      await h.etcd.client().put(h.layout.authzKey(kid)).value(JSON.stringify(weak));
      const { publicKey: good } = await generateKeyPair('RS256');
      const goodJwk = await exportJWK(good);
      await h.store.putAuthzKey({
        kid: 'k-after',
        jwk: { kty: 'RSA', kid: 'k-after', alg: 'RS256', use: 'sig', n: goodJwk.n!, e: goodJwk.e! },
        publishedAt: at,
        activeFrom: at,
      });
      await eventually('the key written after it mirrored', () => secure.cp.watcher.state.authzKeys.has('k-after') || undefined);
      expect(secure.cp.watcher.state.authzKeys.has(kid)).toBe(false);

      const client = open(secure.xdsAddress, bearer(forged));
      client.send({ node: testNode('a'), typeUrl: TypeUrl.Cluster });
      const closed = await client.closedWith();
      expect(closed.code).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(closed.details).toMatch(/invalid token: unknown-kid/);
      const bootstrap = await fetch(`${secure.httpUrl}/bootstrap/a?app_port=18081`, { headers: { authorization: `Bearer ${forged}` } });
      expect(bootstrap.status).toBe(401);
      for (const written of [kid, 'k-after']) await h.etcd.client().delete().key(h.layout.authzKey(written));
    });

    it('attack (#12 point 8): the debug endpoints answer only the admin token', async () => {
      for (const path of ['/debug/config_dump?service=a', '/debug/streams', '/debug/model']) {
        expect((await fetch(`${secure.httpUrl}${path}`)).status).toBe(401);
        const wrong = await fetch(`${secure.httpUrl}${path}`, { headers: { authorization: 'Bearer not-the-admin-token-000' } });
        expect(wrong.status).toBe(401);
        // Not even a service's own xDS token reads them.
        const service = await fetch(`${secure.httpUrl}${path}`, { headers: { authorization: `Bearer ${await sign({ sub: 'a' })}` } });
        expect(service.status).toBe(401);
        const admin = await fetch(`${secure.httpUrl}${path}`, { headers: { authorization: 'Bearer cp-admin-token-0123456789' } });
        expect(admin.status).toBe(200);
      }
    });

    it("attack (#12 point 8): a bootstrap answers only that service's xDS token or the admin token", async () => {
      const get = async (token?: string) =>
        (await fetch(`${secure.httpUrl}/bootstrap/a?app_port=18081`, token ? { headers: { authorization: `Bearer ${token}` } } : {}))
          .status;
      expect(await get()).toBe(401);
      expect(await get(await sign({ sub: 'b' }))).toBe(401); // another service's xDS token
      expect(await get(await sign({ sub: 'a', aud: 'b' }))).toBe(401); // a mesh token, not an xDS token
      expect(await get(await sign({ sub: 'a', issuedAt: Math.floor(Date.now() / 1000) - 1000 }))).toBe(401); // expired
      expect(await get(await sign({ sub: 'a' }))).toBe(200);
      expect(await get('cp-admin-token-0123456789')).toBe(200);
    });

    it('serves a client whose xDS token names its service', async () => {
      const client = open(secure.xdsAddress, bearer(await sign({ sub: 'a' })));
      client.send({ node: testNode('a', 'a-envoy-token'), typeUrl: TypeUrl.Cluster });
      const cds = await client.next();
      expect(cds.typeUrl).toBe(TypeUrl.Cluster);
      expect(cds.resources.length).toBeGreaterThan(0);
    });
  });

  describe('HTTP side', () => {
    it('is ready once the etcd watch is live and the snapshot is loaded', async () => {
      const res = await fetch(`${h.httpUrl}/readyz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ checks: { etcd_watch: true, mesh_snapshot: true } });
    });

    it('answers the standard gRPC health check on the xDS port', async () => {
      const Health = makeGenericClientConstructor(healthService as unknown as ServiceDefinition, 'Health');
      const client = new Health(h.xdsAddress, credentials.createInsecure()) as unknown as {
        check(req: { service: string }, cb: (err: Error | null, res: { status: string }) => void): void;
        close(): void;
      };
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        client.check({ service: 'envoy.service.discovery.v3.AggregatedDiscoveryService' }, (err, r) => (err ? reject(err) : resolve(r))),
      );
      client.close();
      expect(res.status).toBe('SERVING');
    });

    it('dumps the config a connected proxy is served, decoded', async () => {
      const client = open(h.xdsAddress);
      client.send({ node: testNode('a', 'a-envoy-dump'), typeUrl: TypeUrl.Cluster });
      await client.next();
      const res = await fetch(`${h.httpUrl}/debug/config_dump?node=a-envoy-dump`);
      expect(res.status).toBe(200);
      const dump = (await res.json()) as { service: string; types: Record<string, { resources: { name: string }[] }> };
      expect(dump.service).toBe('a');
      expect(dump.types['cds']!.resources.map((r) => r.name)).toContain('outbound|b');
      // proto3 JSON, as Envoy's admin prints it: Durations are strings.
      expect(dump.types['cds']!.resources.find((r) => r.name === 'outbound|b')).toMatchObject({ connectTimeout: '1s' });
    });

    it('lists connected streams and the model’s dropped inputs', async () => {
      const client = open(h.xdsAddress);
      client.send({ node: testNode('a', 'a-envoy-listed'), typeUrl: TypeUrl.Cluster });
      await client.next();
      const streams = (await (await fetch(`${h.httpUrl}/debug/streams`)).json()) as {
        streams: { nodeId: string; identity: { service: string } }[];
      };
      expect(streams.streams).toEqual(
        expect.arrayContaining([expect.objectContaining({ nodeId: 'a-envoy-listed', identity: { service: 'a', kind: 'envoy' } })]),
      );
      const model = (await (await fetch(`${h.httpUrl}/debug/model`)).json()) as { services: number; dropped: unknown[] };
      expect(model.services).toBeGreaterThanOrEqual(3);
      expect(Array.isArray(model.dropped)).toBe(true);
    });

    it('answers a bad query with problem+json naming the field', async () => {
      const res = await fetch(`${h.httpUrl}/debug/config_dump?service=Not_A_Label`);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
      expect(await res.json()).toMatchObject({ errors: [{ field: 'service' }] });
      expect((await fetch(`${h.httpUrl}/debug/config_dump?node=nobody`)).status).toBe(404);
    });

    it('renders the Envoy bootstrap a sidecar of a service starts with', async () => {
      const res = await fetch(`${h.httpUrl}/bootstrap/a?node=a-vm-1&zone=z1&app_port=18081&format=json`);
      expect(res.status).toBe(200);
      const bootstrap = (await res.json()) as {
        node: { id: string; cluster: string };
        static_resources: { clusters: { name: string; load_assignment: unknown }[] };
      };
      expect(bootstrap.node).toMatchObject({ id: 'a-vm-1', cluster: 'a' });
      expect(JSON.stringify(bootstrap.static_resources.clusters)).toContain(String(h.cp.xdsPort));
      const yaml = await (await fetch(`${h.httpUrl}/bootstrap/a?app_port=18081`)).text();
      expect(yaml).toMatch(/cluster: a/);
      // No TLS on this control plane: the bootstrap carries no TLS transport socket.
      expect(yaml).not.toMatch(/UpstreamTlsContext/);
      expect((await fetch(`${h.httpUrl}/bootstrap/nope?app_port=18081`)).status).toBe(404);
      // Out of range, missing, and the service port itself (the inbound listener's) are refused.
      const servicePort = (await h.store.getService('a'))!.value.spec.port;
      for (const query of ['app_port=99999', '', `app_port=${servicePort}`, 'app_port=15001', 'app_port=19000&admin_port=19000']) {
        const bad = await fetch(`${h.httpUrl}/bootstrap/a?${query}`);
        expect(bad.status).toBe(400);
        expect(await bad.json()).toMatchObject({ errors: [{ field: 'app_port' }] });
      }
      // The admin port may not take a port the sidecar binds either.
      const badAdmin = await fetch(`${h.httpUrl}/bootstrap/a?app_port=18081&admin_port=${servicePort}`);
      expect(badAdmin.status).toBe(400);
      expect(badAdmin.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await badAdmin.json()).toMatchObject({ errors: [{ field: 'admin_port' }] });
    });

    // Two sidecars on one VM (issue 14): each bootstrap names its own admin and outbound
    // ports, and the control plane builds each sidecar's outbound listener on its own.
    it('gives each sidecar on a host its own admin and outbound port, from the bootstrap to its listener', async () => {
      const bootstrapOf = async (query: string) => {
        const res = await fetch(`${h.httpUrl}/bootstrap/a?format=json&${query}`);
        expect(res.status).toBe(200);
        return (await res.json()) as {
          node: { id: string; cluster: string; metadata: Record<string, number> };
          admin: { address: { socket_address: { port_value: number } } };
        };
      };
      const outboundPortOf = async (node: { id: string; cluster: string; metadata?: Record<string, number> }) => {
        const client = open(h.xdsAddress);
        client.send({ node: Node.fromPartial({ ...node, userAgentName: 'envoy' }), typeUrl: TypeUrl.Listener });
        const lds = await client.next();
        const outbound = lds.resources.map((r) => Listener.decode(r.value)).find((l) => l.name === OUTBOUND_HTTP_NAME)!;
        const address = outbound.address!.address!;
        return address.$case === 'socketAddress' ? address.value.portSpecifier : undefined;
      };
      const first = await bootstrapOf('node=a.vm-7&app_port=18081&admin_port=15100&outbound_port=15101');
      expect(first.node.metadata).toEqual({ 'trellis.app_port': 18081, 'trellis.outbound_port': 15101 });
      expect(first.admin.address.socket_address.port_value).toBe(15100);
      const second = await bootstrapOf('node=a.vm-7b&app_port=18082');
      expect(second.node.metadata).toEqual({ 'trellis.app_port': 18082 });
      expect(await outboundPortOf(first.node)).toEqual({ $case: 'portValue', value: 15101 });
      expect(await outboundPortOf(second.node)).toEqual({ $case: 'portValue', value: 15001 });

      // A port the sidecar binds otherwise is refused, naming the field; so is a bad port in node metadata.
      const taken = await fetch(`${h.httpUrl}/bootstrap/a?app_port=18081&admin_port=15100&outbound_port=15100`);
      expect(taken.status).toBe(400);
      expect(await taken.json()).toMatchObject({ errors: [{ field: 'outbound_port' }] });
      const bad = open(h.xdsAddress);
      bad.send({
        node: Node.fromPartial({ id: 'a.vm-8', cluster: 'a', userAgentName: 'envoy', metadata: { 'trellis.outbound_port': 'x' } }),
        typeUrl: TypeUrl.Listener,
      });
      const refused = await bad.closedWith();
      expect(refused.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(refused.details).toMatch(/trellis\.outbound_port.*must be a port number/);
    });

    it('exposes the xDS metrics without per-node labels', async () => {
      const text = await (await fetch(`${h.httpUrl}/metrics`)).text();
      expect(text).toMatch(/trellis_control_plane_xds_connected_proxies\{protocol="sotw",kind="envoy"\}/);
      expect(text).toMatch(/trellis_control_plane_xds_pushes_total\{type="cds"\}/);
      expect(text).not.toMatch(/a-envoy-dump/);
    });
  });
});
