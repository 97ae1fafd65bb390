// The Check worker's TLS: the material the main thread's ServingTls (@trellis/runtime/grpc) serves, handed to the
// worker at start and on every change, as a grpc-js certificate provider (identity and
// client roots). The files, the renewals and their metrics stay with the main thread.
import type { experimental } from '@grpc/grpc-js';
import { caUpdateOf, identityUpdateOf, type TlsMaterial } from '@trellis/runtime/grpc';

export class PushedTls implements experimental.CertificateProvider {
  private readonly caListeners = new Set<experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<experimental.IdentityCertificateUpdateListener>();

  constructor(private current: TlsMaterial) {}

  update(material: TlsMaterial): void {
    this.current = material;
    for (const listener of this.caListeners) listener(caUpdateOf(material));
    for (const listener of this.identityListeners) listener(identityUpdateOf(material));
  }

  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    // Asynchronously, like grpc-js's own providers: the server registers its watcher only after adding this listener.
    process.nextTick(listener, caUpdateOf(this.current));
  }

  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    process.nextTick(listener, identityUpdateOf(this.current));
  }

  removeIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }
}
