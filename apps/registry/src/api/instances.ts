// /api/v1/services/{name}/instances: instances register with a TTL (an etcd
// lease) and keep it alive with heartbeats; when they stop, the lease expires
// and the instance disappears. An agent stopping its instance drains it first.
import { Router } from 'express';
import { CheckedInstanceRegistration, InstanceId, ServiceName } from '@trellis/mesh-schema';
import { principalOf } from '../auth';
import type { ServiceCatalog } from '../catalog';
import { parseParam, parseWith, sendWriteJson, setViewAge, type RouteGuards } from '../http';

export function instancesRouter(catalog: ServiceCatalog, guards: RouteGuards): Router {
  const router = Router();
  const { read, write, json } = guards;

  router.get('/services/:name/instances', ...read, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const reads = await catalog.reads();
    const items = await reads.instances(name);
    setViewAge(res, reads.ageSeconds);
    res.json({ items });
  });

  router.post('/services/:name/instances', ...write, ...json, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const registration = parseWith(CheckedInstanceRegistration, req.body);
    const record = await catalog.registerInstance(principalOf(res), name, registration);
    res.location(`/api/v1/services/${name}/instances/${record.id}`);
    const heartbeat = `/api/v1/services/${name}/instances/${record.id}/heartbeat`;
    sendWriteJson(res, 201, record, { ttlSeconds: registration.ttlSeconds, heartbeat });
  });

  router.put('/services/:name/instances/:id/heartbeat', ...write, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const id = parseParam(InstanceId, req.params['id'], 'id');
    await catalog.heartbeatInstance(principalOf(res), name, id);
    res.status(204).end();
  });

  // Draining: the instance keeps its calls in flight but gets no new ones (EDS DRAINING).
  router.put('/services/:name/instances/:id/drain', ...write, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const id = parseParam(InstanceId, req.params['id'], 'id');
    res.json(await catalog.drainInstance(principalOf(res), name, id));
  });

  router.delete('/services/:name/instances/:id', ...write, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const id = parseParam(InstanceId, req.params['id'], 'id');
    await catalog.deregisterInstance(principalOf(res), name, id);
    res.status(204).end();
  });

  return router;
}
