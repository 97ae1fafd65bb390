// A proxyless server asks for its listener by the address it binds
// (`grpc/server?xds.resource.listening_address=<ip>:<port>`), which differs per
// instance while the content does not. Snapshots stay per identity: translation
// builds the listener once (for 0.0.0.0:<service port>), and a Listener map of
// this class answers any other well-formed server listener name with that
// listener rebound to the asked address, made on first use and kept with the
// snapshot (so its version follows the template's content).
import { TypeUrl } from '@trellis/envoy-types';
import { Listener } from '@trellis/envoy-types/envoy/config/listener/v3/listener';
import { parseProxylessServerListenerName, rebindProxylessServerListener } from '../envoy';
import { makeResource, type XdsResource } from '../resource';

export class ListenerResources extends Map<string, XdsResource> {
  private template: XdsResource | undefined;
  private readonly derived = new Map<string, XdsResource | null>();

  override set(name: string, resource: XdsResource): this {
    if (!this.template && parseProxylessServerListenerName(name)) this.template = resource;
    return super.set(name, resource);
  }

  override get(name: string): XdsResource | undefined {
    return super.get(name) ?? this.derive(name);
  }

  override has(name: string): boolean {
    return super.has(name) || this.derive(name) !== undefined;
  }

  private derive(name: string): XdsResource | undefined {
    if (!this.template) return undefined;
    let resource = this.derived.get(name);
    if (resource === undefined) {
      const address = parseProxylessServerListenerName(name);
      resource = address
        ? makeResource(
            TypeUrl.Listener,
            Listener,
            name,
            rebindProxylessServerListener(Listener.decode(this.template.any.value), address.host, address.port),
          )
        : null;
      // Bounded by what this identity's proxies ask for; a name that is not a server listener is remembered as such.
      if (this.derived.size < 1024) this.derived.set(name, resource);
    }
    return resource ?? undefined;
  }
}
