/** `gatehouse peripherals`: connected and pending peripherals. */
import type { PeripheralInfo } from '../status/types.js';
import { SOCKET_OPTIONS, parse, socketPath } from './args.js';
import { getJson } from './client.js';
import { guard } from './command.js';
import { isoTime, table } from './format.js';
import { EXIT_OK, write, type CliIO } from '../../common/cli-io.js';

export const HELP = `Usage: gatehouse peripherals [--json] [--socket PATH]

List the peripherals connected now: device id, transport, state (pending: connected, not yet
welcomed; welcomed: authenticated), since when, whether decided offline, lease expiry, remote,
and for a protocol-v2 session: its version, age, frames each way and dropped frames.

Options:
  --json           print the /v1/peripherals document
  --socket PATH    status socket (default $GATEHOUSE_STATUS_SOCKET or /run/gatehouse/status.sock)
  -h, --help       show this help

Exit codes: 0 ok, 1 the daemon could not be asked, 2 usage error.
`;

export function renderPeripherals(list: PeripheralInfo[]): string {
  if (list.length === 0) return 'no peripherals connected';
  const rows = list.map((p) => [
    p.dev,
    p.transport,
    p.state,
    isoTime(p.since),
    p.offline ? 'yes' : 'no',
    p.leaseExp === undefined ? '-' : isoTime(p.leaseExp * 1000),
    p.remote,
    p.session === undefined ? 'v1' : `v${p.session.version}`,
    p.session === undefined ? '-' : `${Math.round(p.session.ageMs / 1000)}s`,
    p.session === undefined ? '-' : `${p.session.framesIn}/${p.session.framesOut}`,
    p.session === undefined ? '-' : String(p.session.drops),
  ]);
  return table(['DEVICE', 'TRANSPORT', 'STATE', 'SINCE', 'OFFLINE', 'LEASE EXPIRES', 'REMOTE', 'PROTO', 'AGE', 'FRAMES IN/OUT', 'DROPS'], rows);
}

export function run(args: string[], io: CliIO): Promise<number> {
  return guard('gatehouse peripherals', io, async () => {
    const { values } = parse('gatehouse peripherals', args, SOCKET_OPTIONS);
    if (values.help === true) {
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    const r = await getJson<{ peripherals: PeripheralInfo[] }>(socketPath(values.socket, io.env), '/v1/peripherals');
    write(io.stdout, values.json === true ? JSON.stringify(r, null, 2) : renderPeripherals(r.peripherals));
    return EXIT_OK;
  });
}
