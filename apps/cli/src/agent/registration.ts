// What the agent registers for its instance; free of the generated client so the
// deploy tests can check agent settings without generating it.

/** The body of POST /api/v1/services/{name}/instances. */
export interface Registration {
  id: string;
  address: string;
  port: number;
  labels: Record<string, string>;
  locality: { region: string; zone: string; subZone: string };
  platform: 'vm' | 'k8s';
  weight: number;
  ttlSeconds: number;
}
