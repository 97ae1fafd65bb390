// /api/v1/hosts: which team owns each ingress host. The first service that
// claims a host fixes its owner; only an admin assigns it to another team.
import { Router } from 'express';
import { IngressHost } from '@trellis/mesh-schema';
import { principalOf } from '../auth';
import type { ServiceCatalog } from '../catalog';
import { parseParam, parseWith, type RouteGuards } from '../http';
import { HostAssignment } from './schemas';

export function hostsRouter(catalog: ServiceCatalog, guards: RouteGuards): Router {
  const router = Router();
  const { read, write, json } = guards;

  router.get('/hosts', ...read, async (_req, res) => {
    res.json({ items: await catalog.hosts() });
  });

  router.put('/hosts/:host', ...write, ...json, async (req, res) => {
    const host = parseParam(IngressHost, req.params['host'], 'host');
    const { team } = parseWith(HostAssignment, req.body);
    res.json(await catalog.assignHost(principalOf(res), host, team));
  });

  return router;
}
