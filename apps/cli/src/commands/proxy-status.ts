// `trellis proxy-status [SERVICE]`: like istioctl proxy-status — one row per proxy,
// its control plane, and per xDS type whether it has what was last sent to it.
import type { Command } from 'commander';
import { ok, type ProxyStatus } from '../registry/registry-client';
import { CliError, outputOption, print, type Column } from '../output';
import { parseDuration } from '../agent/agent-config';
import { registryOf } from './clients';

export const XDS_TYPES = ['cds', 'lds', 'eds', 'rds', 'sds'] as const;
type XdsType = (typeof XDS_TYPES)[number];
type TypeStatus = NonNullable<ProxyStatus['types'][XdsType]>;

export type SyncState = 'SYNCED' | 'NACKED' | 'STALE' | 'SENT' | 'NOT SENT';

/**
 * SYNCED: the proxy ACKed what was last sent. NACKED: it rejected it (the NACK names the
 * version sent or, as xDS NACKs do, the last one it accepted). STALE: sent, not ACKed
 * after `staleAfterMs`. SENT: sent moments ago, no answer yet.
 */
export function syncState(type: TypeStatus | undefined, updatedAt: string, now: number, staleAfterMs: number): SyncState {
  if (!type?.lastSentVersion) return 'NOT SENT';
  if (type.lastAckedVersion === type.lastSentVersion) return 'SYNCED';
  const nack = type.lastNack;
  if (nack && (nack.version === type.lastSentVersion || nack.version === type.lastAckedVersion || !type.lastAckedVersion)) return 'NACKED';
  return now - Date.parse(updatedAt) > staleAfterMs ? 'STALE' : 'SENT';
}

export interface ProxyRow {
  nodeId: string;
  service: string;
  controlPlane: string;
  states: Record<XdsType, SyncState>;
  /** `type: error` of each NACKED type. */
  nacks: string[];
  status: ProxyStatus;
}

export function proxyRows(statuses: readonly ProxyStatus[], now: number, staleAfterMs: number): ProxyRow[] {
  return statuses.map((status) => {
    const states = Object.fromEntries(XDS_TYPES.map((t) => [t, syncState(status.types[t], status.updatedAt, now, staleAfterMs)])) as Record<
      XdsType,
      SyncState
    >;
    const nacks = XDS_TYPES.filter((t) => states[t] === 'NACKED').map((t) => `${t.toUpperCase()}: ${status.types[t]!.lastNack!.error}`);
    return { nodeId: status.nodeId, service: status.service, controlPlane: status.controlPlane, states, nacks, status };
  });
}

const columns: Column<ProxyRow>[] = [
  { header: 'NAME', value: (r) => r.nodeId },
  { header: 'SERVICE', value: (r) => r.service },
  { header: 'CONTROL PLANE', value: (r) => r.controlPlane },
  ...XDS_TYPES.map((t) => ({ header: t.toUpperCase(), value: (r: ProxyRow) => r.states[t] })),
  { header: 'NACK', value: (r) => r.nacks.join('; ').slice(0, 200) },
];

export function registerProxyStatusCommand(program: Command): void {
  program
    .command('proxy-status')
    .description(
      "xDS sync state of every proxy (or one service's): SYNCED, NACKED (with the error), STALE (sent, not ACKed after --stale-after)",
    )
    .argument('[service]')
    .option('--stale-after <duration>', 'sent but not ACKed for this long is STALE', '10s')
    .addOption(outputOption())
    .action(async (service: string | undefined, opts: { staleAfter: string; output: string }, cmd: Command) => {
      const staleAfterMs = parseDuration(opts.staleAfter);
      if (staleAfterMs === undefined) throw new CliError(`--stale-after: "${opts.staleAfter}" is not a duration`, 2);
      const registry = registryOf(cmd);
      const names = service ? [service] : ok(await registry.GET('/api/v1/services', {}), 'list services').items.map((s) => s.spec.name);
      const statuses: ProxyStatus[] = [];
      for (const name of names) {
        statuses.push(
          ...ok(await registry.GET('/api/v1/services/{name}/proxies', { params: { path: { name } } }), `proxies of ${name}`).items,
        );
      }
      const rows = proxyRows(statuses, Date.now(), staleAfterMs);
      print(
        opts.output,
        rows.map((r) => ({ ...r.status, sync: r.states })),
        rows,
        columns,
      );
    });
}
