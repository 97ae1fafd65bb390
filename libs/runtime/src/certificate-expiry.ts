// When a certificate this process holds expires, as a gauge an alert can watch. The apps'
// etcd client certificate is the case in point: etcd3 takes it once, when the client is
// made, so a renewed file only counts after a restart, and the gauge shows the one in use.
import { X509Certificate } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';

/**
 * The not-after of the first certificate in `pem` (a chain's leaf) as a Unix time in seconds.
 * `source` names where the PEM came from in the error when it holds no certificate.
 */
export function certificateNotAfterSeconds(pem: Buffer | string, source: string): number {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch (err) {
    throw new Error(`${source}: not a PEM certificate (${(err as Error).message})`);
  }
  return Date.parse(certificate.validTo) / 1000;
}

/**
 * Registers `metric` as a gauge holding when the certificate in `pem` expires (Unix seconds).
 * Only call it with a certificate: an unset gauge would read 0, that is long expired.
 */
export function registerCertificateExpiryGauge(
  registry: Registry,
  metric: { name: string; help: string },
  pem: Buffer | string,
  source: string,
): void {
  const notAfter = certificateNotAfterSeconds(pem, source);
  new Gauge({ name: metric.name, help: metric.help, registers: [registry] }).set(notAfter);
}
