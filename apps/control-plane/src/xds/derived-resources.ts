// Resources a proxy asks for by names translation does not build, answered from
// its identity's snapshot:
// - A proxyless server asks for its listener by the address it binds
//   (`grpc/server?xds.resource.listening_address=<ip>:<port>`), which differs per
//   instance while the content does not. Translation builds the listener once (for
//   0.0.0.0:<service port>), and this map answers any other well-formed server
//   listener name with that listener rebound to the asked address.
// - A proxyless client asks for `<target>` (and then its cluster and endpoints)
//   when it dials `xds:///<target>`. A target its service did not declare gets
//   resources that fail its calls at once naming the missing dependency
//   (envoy/refused-target.ts).
// Derived resources are made on first use and kept with the snapshot (so their
// version follows the snapshot's content); they are not part of the map's own
// entries, so a wildcard subscription and the type's version see only what
// translation built.
import { TypeUrl, type XdsTypeUrl } from '@trellis/envoy-types';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { parseProxylessServerListenerName, rebindProxylessServerListener, undeclaredTargetResource } from '../envoy';
import { makeResource, type ProxyIdentity, type XdsResource } from '../resource';

/** Derived resources remembered per snapshot and type; past it they are made again on each ask. */
const MAX_DERIVED = 1024;

/**
 * Undeclared targets answered per snapshot and type. A service's clients dial a few; a stream
 * naming thousands of made-up targets (one request may carry ~500,000 names) must not buy a
 * resource each. Past the cap a target gets no answer, as before: grpc-js-xds's 15 s timeout.
 */
export const MAX_UNDECLARED_TARGETS = 256;

/** The types whose names a proxy may ask for beyond what translation built. */
export const DERIVED_TYPES: ReadonlySet<XdsTypeUrl> = new Set([TypeUrl.Listener, TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment]);

export class DerivedResources extends Map<string, XdsResource> {
  private template: XdsResource | undefined;
  private readonly derived = new Map<string, XdsResource | null>();
  private undeclaredTargets = 0;

  /** `identity` absent: only server listeners are derived (tests of the protocol alone). */
  constructor(
    private readonly typeUrl: XdsTypeUrl,
    private readonly identity?: ProxyIdentity,
  ) {
    super();
  }

  override set(name: string, resource: XdsResource): this {
    if (!this.template && this.typeUrl === TypeUrl.Listener && parseProxylessServerListenerName(name)) this.template = resource;
    return super.set(name, resource);
  }

  override get(name: string): XdsResource | undefined {
    return super.get(name) ?? this.derive(name);
  }

  override has(name: string): boolean {
    return super.has(name) || this.derive(name) !== undefined;
  }

  /** Whether translation built `name` (has() also answers derived names). */
  built(name: string): boolean {
    return super.has(name);
  }

  private derive(name: string): XdsResource | undefined {
    let resource = this.derived.get(name);
    if (resource === undefined) {
      resource = this.serverListener(name) ?? this.undeclaredTarget(name) ?? null;
      // Bounded by what this identity's proxies ask for; a name that is neither is remembered as such.
      if (this.derived.size < MAX_DERIVED) this.derived.set(name, resource);
    }
    return resource ?? undefined;
  }

  private serverListener(name: string): XdsResource | undefined {
    const address = this.template && parseProxylessServerListenerName(name);
    if (!this.template || !address) return undefined;
    return makeResource(
      TypeUrl.Listener,
      Listener,
      name,
      rebindProxylessServerListener(Listener.decode(this.template.any.value), address.host, address.port),
    );
  }

  private undeclaredTarget(name: string): XdsResource | undefined {
    // Envoy sidecars subscribe to every listener and cluster (wildcard) and never dial a target by name.
    if (this.identity?.kind !== 'proxyless' || this.undeclaredTargets >= MAX_UNDECLARED_TARGETS) return undefined;
    const resource = undeclaredTargetResource(this.typeUrl, this.identity.service, name);
    if (resource) this.undeclaredTargets++;
    return resource;
  }
}
