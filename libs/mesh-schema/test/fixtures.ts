// Small builders for test records.
import type { RegisterInstanceInput } from '../src/store';
import type { ServiceSpecInput } from '../src/records';

export function aService(name: string, overrides: Partial<ServiceSpecInput> = {}): ServiceSpecInput {
  return { name, team: 'payments', protocol: 'http', port: 8080, ...overrides };
}

export function anInstance(service: string, id: string, overrides: Partial<RegisterInstanceInput> = {}): RegisterInstanceInput {
  return { service, id, address: '10.0.0.1', port: 8080, platform: 'vm', ...overrides };
}
