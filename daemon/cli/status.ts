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
decision counts, peripherals failing now, the rate limits in force. Times in the local time
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
    ['Limits', `rate ${s.rateLimits.perConnectionPerMin}/min per connection, ${s.rateLimits.perDevicePerMin}/min per device, ${s.rateLimits.globalPerMin}/min in all`],
    ['Times', zoneName(zone, nowMs)],
  ]);
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
