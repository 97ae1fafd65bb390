// /api/v1/services: the service definitions, their history and rollback.
import { Router } from 'express';
import type { Response } from 'express';
import { CheckedServiceSpec, ServiceName } from '@trellis/mesh-schema';
import type { ServiceRecord, Versioned } from '@trellis/mesh-schema';
import { z } from 'zod';
import { principalOf } from '../auth';
import type { ServiceCatalog } from '../catalog';
import { etagOf, parseIfMatch, parseParam, parseWith, sendSharedJson, sendWriteJson, setViewAge, type RouteGuards } from '../http';
import { problems } from '../problem';
import { RollbackRequest, ServiceListQuery } from './schemas';

export function serviceResource({ value, modRevision }: Versioned<ServiceRecord>): ServiceRecord & { modRevision: string } {
  return { ...value, modRevision };
}

function sendService(res: Response, status: number, service: Versioned<ServiceRecord>): void {
  res.status(status).set('ETag', etagOf(service.modRevision)).json(serviceResource(service));
}

/** A created, replaced or rolled-back service: the same answer as sendService, sent the cheaper way a write can be. */
function sendWrittenService(res: Response, status: number, service: Versioned<ServiceRecord>): void {
  res.setHeader('ETag', etagOf(service.modRevision));
  // serviceResource's JSON, from the bytes the store wrote when it has them.
  sendWriteJson(res, status, service.value, { modRevision: service.modRevision });
}

export function servicesRouter(catalog: ServiceCatalog, guards: RouteGuards): Router {
  const router = Router();
  const { read, write, json } = guards;

  router.get('/services', ...read, async (req, res) => {
    const query = parseWith(ServiceListQuery, { ...req.query });
    const reads = await catalog.reads();
    const items = await reads.services(query);
    setViewAge(res, reads.ageSeconds);
    res.json({ items: items.map(serviceResource) });
  });

  router.post('/services', ...write, ...json, async (req, res) => {
    // Checked once: the store takes CheckedServiceSpec's output as it is.
    const spec = parseWith(CheckedServiceSpec, req.body);
    const created = await catalog.create(principalOf(res), spec);
    res.location(`/api/v1/services/${spec.name}`);
    sendWrittenService(res, 201, created);
  });

  router.get('/services/:name', ...read, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const reads = await catalog.reads();
    const service = await reads.service(name);
    if (!service) throw problems.notFound(`service "${name}" is not registered`);
    setViewAge(res, reads.ageSeconds);
    sendService(res, 200, service);
  });

  router.put('/services/:name', ...write, ...json, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const ifMatch = parseIfMatch(req.get('If-Match'));
    const body: unknown = req.body;
    // The name may be left out of the body; when given it must match the path.
    const withName = isObject(body) && !('name' in body) ? { ...body, name } : body;
    const spec = parseWith(CheckedServiceSpec, withName);
    if (spec.name !== name) throw problems.validation([{ field: 'name', message: `must match the path ("${name}")` }]);
    const { created, service } = await catalog.put(principalOf(res), spec, ifMatch);
    if (created) res.location(`/api/v1/services/${name}`);
    sendWrittenService(res, created ? 201 : 200, service);
  });

  router.delete('/services/:name', ...write, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    await catalog.delete(principalOf(res), name, parseIfMatch(req.get('If-Match')));
    res.status(204).end();
  });

  router.get('/services/:name/history', ...read, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    res.json({ items: await catalog.history(name) });
  });

  router.get('/services/:name/history/:generation', ...read, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const generation = parseParam(z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER), req.params['generation'], 'generation');
    res.json(await catalog.historyEntry(name, generation));
  });

  router.post('/services/:name/rollback', ...write, ...json, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    const { generation } = parseWith(RollbackRequest, req.body);
    sendWrittenService(res, 200, await catalog.rollback(principalOf(res), name, generation, parseIfMatch(req.get('If-Match'))));
  });

  router.get('/services/:name/proxies', ...read, async (req, res) => {
    const name = parseParam(ServiceName, req.params['name'], 'name');
    res.json({ items: await catalog.proxies(name) });
  });

  router.get('/topology', ...read, async (_req, res) => {
    const reads = await catalog.reads();
    const topology = await reads.topology();
    setViewAge(res, reads.ageSeconds);
    sendSharedJson(res, topology);
  });

  return router;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
