// Registry records → mesh model. Pure: the same state and settings always give
// the same model, sorted by name, so everything derived from it is deterministic.
import { callersByService, compareStrings } from '@trellis/mesh-contracts';
import { createHash } from 'node:crypto';
import {
  DEFAULT_TRUST_DOMAIN,
  dependencySince,
  type AuthzPublicKey,
  type InvalidRecord,
  type InstanceRecord,
  type Locality,
  type MeshSettings,
  type ServiceRecord,
  type TrafficPolicy,
} from '@trellis/mesh-schema';
import type {
  DependencyModel,
  ServiceMemo,
  DroppedInput,
  LocalityEndpoints,
  MeshModel,
  MeshTokens,
  ServiceModel,
  TranslatorSettings,
  UpstreamModel,
} from './mesh-model';

/**
 * The part of the watcher's MeshState the model reads. MeshWatcher.state
 * satisfies it structurally; tests build it by hand.
 */
export interface MeshStateView {
  revision: string;
  services: ReadonlyMap<string, { value: ServiceRecord; modRevision: string }>;
  instances: ReadonlyMap<string, ReadonlyMap<string, InstanceRecord>>;
  meshSettings?: MeshSettings | undefined;
  authzKeys: ReadonlyMap<string, AuthzPublicKey>;
  /** Stored values the watcher could not use; each becomes a dropped input. */
  invalid?: ReadonlyMap<string, InvalidRecord>;
}

/**
 * `previous` (optional) is the model built before this one: per-service parts
 * whose inputs are the very same records (records are immutable values; a
 * changed key gets a new one) are reused instead of rebuilt, which keeps a
 * one-instance change in a 10,000-service mesh cheap. Without it everything
 * is computed; the result is the same either way.
 */
export function buildMeshModel(state: MeshStateView, settings: TranslatorSettings, previousModel?: MeshModel): MeshModel {
  // Reused parts assume the same settings (ports decide which TCP dependencies fit).
  const previous = previousModel && sameSettings(previousModel.settings, settings) ? previousModel : undefined;
  const dropped: DroppedInput[] = [...(state.invalid?.values() ?? [])]
    .sort((a, b) => compare(a.key, b.key))
    .map((r) => ({ kind: r.kind, name: r.name, reason: `unusable record at ${r.key}: ${r.issues.join('; ')}` }));
  const names = [...state.services.keys()].sort();

  for (const name of names) {
    for (const dep of state.services.get(name)!.value.spec.dependencies) {
      if (!state.services.has(dep.service)) {
        dropped.push({ kind: 'dependency', name: `${name}→${dep.service}`, reason: `service "${dep.service}" is not registered` });
      }
    }
  }
  // Who may call whom: the mesh's one rule (authz's Check applies the same function per call).
  const callers = callersByService(names.map((name) => state.services.get(name)!.value.spec));

  for (const service of state.instances.keys()) {
    if (!state.services.has(service)) {
      dropped.push({ kind: 'instance', name: service, reason: `instances of unregistered service "${service}" are ignored` });
    }
  }

  const services = new Map<string, ServiceModel>();
  const memo = new Map<string, ServiceMemo>();
  for (const name of names) {
    const { value: record, modRevision } = state.services.get(name)!;
    const spec = record.spec;
    if (spec.name !== name) {
      dropped.push({ kind: 'service', name, reason: `record names "${spec.name}" but is stored as "${name}"` });
      continue;
    }
    const byId = state.instances.get(name);
    const reused = previous?.memo.get(name);
    let entry: ServiceMemo;
    if (reused && reused.record === record && sameInstances(reused.instances, byId)) {
      entry = reused;
      dropped.push(...reused.dropped);
    } else {
      const instances = sortedInstances(byId);
      const localities = groupByLocality(instances);
      const ownDropped: DroppedInput[] = [];
      const upstreams = upstreamsOf(record, instances, localities, ownDropped);
      dropped.push(...ownDropped);
      entry = {
        record,
        instances: new Map(byId ?? []),
        localities,
        upstreams,
        dropped: ownDropped,
        exposedDigest: digest(
          JSON.stringify([
            spec.protocol,
            spec.port,
            spec.policy,
            spec.mtls ?? 'off',
            upstreams,
            upstreams.length === 1 && upstreams[0]!.subset === undefined ? null : localities,
          ]),
        ),
        specDigest: digest(
          JSON.stringify([spec.protocol, spec.port, spec.policy, spec.ingress ?? null, spec.dependencies, spec.mtls ?? 'off']),
        ),
      };
    }
    memo.set(name, entry);
    const reserved = spec.port === settings.outboundPort || spec.port === settings.adminPort;
    if (reserved) {
      dropped.push({
        kind: 'service',
        name,
        reason: `port ${spec.port} is reserved in sidecars (outbound ${settings.outboundPort}, admin ${settings.adminPort}): its sidecars get no inbound listener`,
      });
    }
    services.set(name, {
      name,
      team: spec.team,
      protocol: spec.protocol,
      port: spec.port,
      policy: spec.policy,
      ...(spec.ingress ? { ingress: spec.ingress } : {}),
      mtls: spec.mtls ?? 'off',
      inbound: !reserved,
      dependencies: [],
      callers: callers.get(name) ?? [],
      upstreams: entry.upstreams,
      localities: entry.localities,
      modRevision,
    });
  }

  // Dependencies second: they need the callee's resolved policy.
  for (const service of services.values()) {
    const entry = memo.get(service.name)!;
    const calleeRecords = entry.record.spec.dependencies.map((dep) => memo.get(dep.service)?.record);
    const reused = previous?.memo.get(service.name);
    if (reused?.record === entry.record && reused.dependencies && sameRefs(reused.dependencies.calleeRecords, calleeRecords)) {
      entry.dependencies = reused.dependencies;
      service.dependencies = reused.dependencies.models;
      dropped.push(...reused.dependencies.dropped);
      continue;
    }
    const depDropped: DroppedInput[] = [];
    const deps = [...entry.record.spec.dependencies].sort((a, b) => compare(a.service, b.service));
    // A TCP dependency is reached on 127.0.0.1:<its port>, so that port must be free in the caller's sidecar.
    const portsInUse = new Set([settings.outboundPort, settings.adminPort, service.port]);
    service.dependencies = deps.flatMap((dep): DependencyModel[] => {
      const callee = services.get(dep.service);
      if (!callee) return [];
      if (callee.protocol === 'tcp') {
        if (portsInUse.has(callee.port)) {
          depDropped.push({
            kind: 'dependency',
            name: `${service.name}→${callee.name}`,
            reason: `TCP port ${callee.port} is already taken in ${service.name}'s sidecar`,
          });
          return [];
        }
        portsInUse.add(callee.port);
      }
      return [
        {
          service: dep.service,
          policy: mergePolicy(callee.policy, dep.policy),
          ...(dep.policy ? { override: dep.policy } : {}),
          since: dependencySince(entry.record, dep.service),
        },
      ];
    });
    dropped.push(...depDropped);
    entry.dependencies = { calleeRecords, models: service.dependencies, dropped: depDropped };
  }

  const tokens = tokensOf(state, settings, dropped);
  const trustDomain = state.meshSettings?.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const sharedDigest = digest(JSON.stringify([tokens, trustDomain, settings]));
  return {
    sharedDigest,
    trustDomain,
    revision: state.revision,
    settings,
    services,
    tokens,
    dropped,
    identityFingerprints: fingerprints(services, memo, sharedDigest, previous),
    memo,
  };
}

/** Identities (service names) whose proxies' config may differ between two models. */
export function servicesAffected(prev: MeshModel | undefined, next: MeshModel): Set<string> {
  const affected = new Set<string>();
  for (const [name, digest] of next.identityFingerprints) {
    if (prev?.identityFingerprints.get(name) !== digest) affected.add(name);
  }
  if (prev) {
    for (const name of prev.identityFingerprints.keys()) {
      if (!next.identityFingerprints.has(name)) affected.add(name);
    }
  }
  return affected;
}

/** Field-by-field: what the caller set wins, the rest comes from the callee. */
export function mergePolicy(callee: TrafficPolicy, override: TrafficPolicy | undefined): TrafficPolicy {
  if (!override) return callee;
  const merged: TrafficPolicy = { ...callee };
  for (const [key, value] of Object.entries(override)) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  }
  return merged;
}

function sortedInstances(byId: ReadonlyMap<string, InstanceRecord> | undefined): InstanceRecord[] {
  if (!byId) return [];
  return [...byId.values()].sort((a, b) => compare(a.id, b.id));
}

function localityKey(l: Locality): string {
  return `${l.region}/${l.zone}/${l.subZone}`;
}

export function groupByLocality(instances: readonly InstanceRecord[]): LocalityEndpoints[] {
  const groups = new Map<string, LocalityEndpoints>();
  for (const instance of instances) {
    const key = localityKey(instance.locality);
    let group = groups.get(key);
    if (!group) {
      const { region, zone, subZone } = instance.locality;
      groups.set(key, (group = { locality: { region, zone, subZone }, weight: 0, endpoints: [] }));
    }
    const { id: instanceId, address, port, weight } = instance;
    group.endpoints.push({ instanceId, address, port, weight, ...(instance.drainingSince ? { draining: true as const } : {}) });
    if (!instance.drainingSince) group.weight += instance.weight;
  }
  // A locality whose instances all drain keeps a weight (xDS requires >= 1); it has no endpoint to pick.
  for (const group of groups.values()) if (group.weight === 0) group.weight = 1;
  return [...groups.entries()].sort(([a], [b]) => compare(a, b)).map(([, group]) => group);
}

function upstreamsOf(
  record: ServiceRecord,
  instances: readonly InstanceRecord[],
  localities: LocalityEndpoints[],
  dropped: DroppedInput[],
): UpstreamModel[] {
  const split = record.spec.trafficSplit;
  if (!split) return [{ weight: 100, localities }];
  const upstreams = split
    .filter((subset) => subset.weight > 0)
    .map((subset) => ({
      subset: subset.name,
      weight: subset.weight,
      localities: groupByLocality(instances.filter((i) => Object.entries(subset.labels).every(([k, v]) => i.labels[k] === v))),
    }))
    .sort((a, b) => compare(a.subset, b.subset));
  if (upstreams.length === 0) {
    // The schema requires weights adding up to 100, so this is a record written around it.
    dropped.push({ kind: 'trafficSplit', name: record.spec.name, reason: 'no subset has a weight above 0; routing to every instance' });
    return [{ weight: 100, localities }];
  }
  return upstreams;
}

function tokensOf(state: MeshStateView, settings: TranslatorSettings, dropped: DroppedInput[]): MeshTokens {
  const keys = [...state.authzKeys.values()].sort((a, b) => compare(a.kid, b.kid));
  const jwks = keys.flatMap((key) => {
    if (key.jwk.kid !== key.kid) {
      dropped.push({ kind: 'authzKey', name: key.kid, reason: `JWK kid "${key.jwk.kid}" differs from the record's kid` });
      return [];
    }
    const { kty, kid, alg, use, n, e, crv, x, y } = key.jwk;
    const complete = kty === 'RSA' ? n !== undefined && e !== undefined : crv !== undefined && x !== undefined && y !== undefined;
    if (!complete) {
      dropped.push({ kind: 'authzKey', name: key.kid, reason: `${kty} JWK lacks its public parameters` });
      return [];
    }
    return [kty === 'RSA' ? { kty, kid, alg, use, n, e } : { kty, kid, alg, use, crv, x, y }];
  });
  return {
    issuer: state.meshSettings?.tokenIssuer ?? settings.defaultTokenIssuer,
    clockSkewSeconds: state.meshSettings?.clockSkewSeconds ?? 30,
    jwks: JSON.stringify({ keys: jwks }),
    keyIds: jwks.map((k) => k.kid),
  };
}

/**
 * A proxy of service S is built from: S's own spec, its callers, what each of
 * its dependencies exposes to callers (port, protocol, policy, endpoints), the
 * mesh tokens and the settings. The fingerprint joins digests of exactly those.
 */
function fingerprints(
  services: ReadonlyMap<string, ServiceModel>,
  memo: ReadonlyMap<string, ServiceMemo>,
  shared: string,
  previous: MeshModel | undefined,
): Map<string, string> {
  const sharedUnchanged = previous !== undefined && previous.sharedDigest === shared;
  const result = new Map<string, string>();
  for (const s of services.values()) {
    const entry = memo.get(s.name)!;
    // Same memo objects mean the same digests: skip re-hashing the unchanged majority.
    if (sharedUnchanged && previous.memo.get(s.name) === entry) {
      const before = previous.services.get(s.name)!;
      const unchanged =
        sameRefs(before.callers, s.callers) && s.dependencies.every((d) => previous.memo.get(d.service) === memo.get(d.service));
      if (unchanged) {
        result.set(s.name, previous.identityFingerprints.get(s.name)!);
        continue;
      }
    }
    const deps = s.dependencies.map((d) => `${d.service}=${memo.get(d.service)!.exposedDigest}`).join(',');
    result.set(s.name, digest(`${shared}|${entry.specDigest}|${s.callers.join(',')}|${deps}`));
  }
  return result;
}

function sameSettings(a: TranslatorSettings, b: TranslatorSettings): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

function sameRefs(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameInstances(before: ReadonlyMap<string, InstanceRecord>, now: ReadonlyMap<string, InstanceRecord> | undefined): boolean {
  if (!now) return before.size === 0;
  if (now.size !== before.size) return false;
  for (const [id, record] of now) if (before.get(id) !== record) return false;
  return true;
}

function digest(text: string): string {
  return createHash('sha1').update(text).digest('base64');
}

/** The mesh's string order, with an absent value (the whole-service upstream) first. */
function compare(a: string | undefined, b: string | undefined): number {
  return compareStrings(a ?? '', b ?? '');
}
