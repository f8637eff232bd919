/** `gatehouse status`: what the running daemon is doing, from the status socket. */
import type { StatusReport } from '../status/types.js';
import { SOCKET_OPTIONS, TIME_OPTIONS, parse, socketPath } from './args.js';
import { getJson } from './client.js';
import { guard } from './command.js';
import { age, clockTime, duration, keyValues, until, zoneName, type Zone } from './format.js';
import { EXIT_OK, write, type CliIO } from '../../common/cli-io.js';

export const HELP = `Usage: gatehouse status [--utc] [--json] [--socket PATH]

Show the running daemon's state: gateway id and mode, since when it runs, session and
credential expiry, backend connectivity, TPM, MQTT listeners and connections, BLE adapter,
decision counts, peripherals failing now, the rate limits in force, and the v2 data plane:
the uplink queue (records, bytes, oldest, acks), the uploader (circuit, uploaded, duplicates,
refused, last ok, last error) and the commands (pending, relayed, acked, expired). Times in the local time
zone (--utc for UTC), each with how long ago or how soon.

Options:
  --utc            times in UTC instead of the local time zone
  --json           print the /v1/status document
  --socket PATH    status socket (default $GATEHOUSE_STATUS_SOCKET or /run/gatehouse/status.sock)
  -h, --help       show this help

Exit codes: 0 ok, 1 the daemon could not be asked, 2 usage error.
`;

export function renderStatus(s: StatusReport, nowMs: number, zone: Zone = 'local'): string {
  const session = s.session.held && s.session.notAfter !== undefined
    ? `held, credential expires ${clockTime(s.session.notAfter * 1000, zone)} (${until(s.session.notAfter * 1000, nowMs)})`
    : 'none: the backend has not accepted this gateway yet (run: gatehouse check)';
  const listeners = s.transports.mqtt.listeners.map((l) => `${l.name} ${l.address}:${l.port}`).join(', ') || 'none';
  const b = s.backend;
  return keyValues([
    ['Gateway', `${s.gateway.id} (version ${s.gateway.version}${s.gateway.production ? ', production' : ', NOT production'}), pid ${s.gateway.pid}`],
    ['State', `${s.state}, up ${duration(s.gateway.uptimeSec)} (since ${clockTime(s.gateway.startedAt, zone)})`],
    ['Session', session],
    ['Backend', `${b.state}, circuit ${b.circuit}, ${b.queued} queued, ${b.inFlight} in flight${b.lastOkAt === undefined ? '' : `, last ok ${clockTime(b.lastOkAt, zone)} (${age(b.lastOkAt, nowMs)})`}`],
    ['TPM', `${s.tpm.kind}, ${s.tpm.ready ? 'ready' : 'NOT ready'}`],
    ['MQTT', `${listeners}; ${s.transports.mqtt.connections} connection(s)`],
    ['BLE', s.transports.ble.enabled ? `${s.transports.ble.adapterState}, ${s.transports.ble.active} active` : 'disabled'],
    ['Decisions', `${s.decisions.welcome} welcome, ${s.decisions.reject} reject, ${s.decisions.offline} offline`],
    ['Failing', s.failing === undefined ? 'not reported by this daemon' : s.failing === 0 ? 'no peripheral failing' : `${s.failing} peripheral(s) failing: gatehouse peripherals --failing`],
    ...uplinkLines(s, nowMs, zone),
    ['Limits', `rate ${s.rateLimits.perConnectionPerMin}/min per connection, ${s.rateLimits.perDevicePerMin}/min per device, ${s.rateLimits.globalPerMin}/min in all`],
    ['Times', zoneName(zone, nowMs)],
  ]);
}

/** The data plane's lines, when the daemon runs one. */
function uplinkLines(s: StatusReport, nowMs: number, zone: Zone): [string, string][] {
  const u = s.uplink;
  if (u === undefined) return [];
  const q = u.queue;
  const up = u.uploader;
  const c = u.commands;
  const last = up.lastSuccessAt === undefined ? 'none yet' : `${clockTime(up.lastSuccessAt, zone)} (${age(up.lastSuccessAt, nowMs)})`;
  return [
    ['Queue', `${q.records} record(s), ${kib(q.bytes)}${q.records > 0 ? `, oldest ${duration(q.oldestAgeSec)}` : ''}; ${q.acks} ack(s); ${q.busy} busy, ${q.expired} expired unsent`],
    ['Uploader', `circuit ${up.circuit}, ${up.uploaded} uploaded, ${up.duplicates} duplicate(s), ${up.refused} refused, ${up.acksUploaded} ack(s); last ok ${last}${up.lastError === undefined || up.failures === 0 ? '' : `; ${up.failures} failure(s), last: ${up.lastError}`}`],
    ['Commands', `${c.pending} pending, ${c.relayed} relayed, ${c.acked} acked, ${c.expired} expired, ${c.refused} refused`],
  ];
}

function kib(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
}

export function run(args: string[], io: CliIO): Promise<number> {
  return guard('gatehouse status', io, async () => {
    const { values } = parse('gatehouse status', args, { ...SOCKET_OPTIONS, ...TIME_OPTIONS });
    if (values.help === true) {
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    const s = await getJson<StatusReport>(socketPath(values.socket, io.env), '/v1/status');
    write(io.stdout, values.json === true ? JSON.stringify(s, null, 2) : renderStatus(s, Date.now(), values.utc === true ? 'utc' : 'local'));
    return EXIT_OK;
  });
}
