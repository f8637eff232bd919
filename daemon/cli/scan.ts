/**
 * `gatehouse scan [--follow]`: nearby BLE peripherals advertising the Gatehouse service, as the
 * running daemon's BLE transport hears them (the status socket's /v1/scan; this command never
 * opens the radio itself).
 */
import type { ScanPeripheral, ScanReport } from '../status/types.js';
import { SOCKET_OPTIONS, TIME_OPTIONS, intOption, parse, socketPath } from './args.js';
import { getJson } from './client.js';
import { guard, pause, untilSignal } from './command.js';
import { age, clockTime, duration, legend, table, zoneName, type Zone } from './format.js';
import { EXIT_OK, write, type CliIO } from '../../common/cli-io.js';

/** The daemon has no usable BLE (disabled in the config, no adapter, adapter off). */
export const EXIT_NO_BLE = 4;

export const HELP = `Usage: gatehouse scan [--follow] [--utc] [--json] [--socket PATH]

Show the BLE peripherals near this gateway that advertise the Gatehouse service, as the
running daemon's BLE transport hears them (asked over the status socket: this command never
opens the radio itself), the most recently heard first. The daemon keeps a bounded log:
at most limits.maxEntries addresses, each forgotten limits.ttlSec after it was last heard
(both in --json).
Columns: ADDRESS (for display, never an identity), NAME (advertised local name), RSSI (dBm of
the last advertisement), VERSIONS (protocol versions whose characteristic the gateway found when
it connected; "advertised" when it has not connected yet), HEARD (last advertisement),
LAST (the last exchange: welcome/reject/failed, with the device, reason or error and when),
DENY (the gateway's back-off for this address: when it tries again, failures in a row).

Options:
  -f, --follow       keep printing a line each time a peripheral is heard again (Ctrl-C stops)
  --interval-ms MS   poll interval with --follow (default 1000)
  --utc              times in UTC instead of the local time zone (--follow)
  --json             the daemon's answer as JSON (one peripheral per line with --follow)
  --socket PATH      status socket (default $GATEHOUSE_STATUS_SOCKET or /run/gatehouse/status.sock)
  -h, --help         show this help

Exit codes: 0 ok (and on Ctrl-C with --follow), 1 the daemon could not be asked, 2 usage error,
4 the daemon has no BLE (disabled in the config or unavailable: one line says why).
`;

const OPTIONS = {
  ...SOCKET_OPTIONS,
  ...TIME_OPTIONS,
  follow: { type: 'boolean', short: 'f' },
  'interval-ms': { type: 'string' },
} as const;

export const SCAN_HEADERS = ['ADDRESS', 'NAME', 'RSSI', 'VERSIONS', 'HEARD', 'LAST', 'DENY'];

function versionsCell(p: ScanPeripheral): string {
  if (!p.versionsKnown) return 'advertised';
  return p.versions.length === 0 ? 'none found' : p.versions.map((v) => `v${v}`).join(',');
}

function lastCell(p: ScanPeripheral, nowMs: number): string {
  const o = p.lastOutcome;
  if (o === undefined) return '-';
  const detail = [o.dev, o.reason ?? o.error, o.version === undefined ? undefined : `v${o.version}`].filter((x) => x !== undefined);
  return `${o.outcome}${detail.length === 0 ? '' : ` ${detail.join(' ')}`}, ${age(o.at, nowMs)}`;
}

function denyCell(p: ScanPeripheral): string {
  const { holdOffMs, failures } = p.deny;
  const f = failures === 0 ? '' : `${failures} failure${failures === 1 ? '' : 's'}`;
  if (holdOffMs <= 0) return f === '' ? '-' : `may try now (${f})`;
  return `in ${duration(Math.ceil(holdOffMs / 1000))}${f === '' ? ' (after a welcome)' : ` (${f})`}`;
}

export function scanRow(p: ScanPeripheral, nowMs: number): string[] {
  return [p.address, p.name ?? '-', p.rssi === undefined ? '-' : `${p.rssi} dBm`, versionsCell(p), age(p.lastSeenAt, nowMs), lastCell(p, nowMs), denyCell(p)];
}

export const SCAN_LEGEND = legend(['NAME -: none advertised', 'RSSI -: not reported', 'LAST -: no exchange yet', 'DENY -: not held off']);

/** The one line that says why there is nothing to scan with. */
export function noBleLine(reason: string): string {
  return `gatehouse scan: no BLE: ${reason}`;
}

/** Follow mode prints as peripherals are heard, so columns have fixed widths. */
const WIDTHS = [20, 19, 16, 8, 10, 12, 40];
function fixed(cells: string[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(WIDTHS[i] ?? 0))).join('  ');
}

/** The command with an explicit stop signal (tests; `run` ties it to SIGINT/SIGTERM). */
export function runScan(args: string[], io: CliIO, signal: AbortSignal): Promise<number> {
  const cmd = 'gatehouse scan';
  return guard(cmd, io, async () => {
    const { values } = parse(cmd, args, OPTIONS);
    if (values.help === true) {
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    const interval = intOption(cmd, 'interval-ms', values['interval-ms'], 1000, 60000);
    const sock = socketPath(values.socket, io.env);
    const json = values.json === true;
    const zone: Zone = values.utc === true ? 'utc' : 'local';
    const first = await getJson<ScanReport>(sock, '/v1/scan');
    if (values.follow !== true) {
      if (json) write(io.stdout, JSON.stringify(first, null, 2));
      if (!first.ble.available) {
        write(io.stderr, noBleLine(first.ble.reason));
        return EXIT_NO_BLE;
      }
      if (json) return EXIT_OK;
      const now = Date.now();
      write(
        io.stdout,
        first.peripherals.length === 0
          ? `no Gatehouse peripherals heard (adapter ${first.ble.adapterState}, ${first.ble.scanning ? 'scanning' : 'not scanning'})`
          : `${table(SCAN_HEADERS, first.peripherals.map((p) => scanRow(p, now)))}\n${SCAN_LEGEND}`,
      );
      return EXIT_OK;
    }
    if (!first.ble.available) {
      write(io.stderr, noBleLine(first.ble.reason));
      return EXIT_NO_BLE;
    }
    if (!json) write(io.stdout, `${legend(['NAME -: none advertised', 'LAST -: no exchange yet', 'DENY -: not held off', `TIME in ${zoneName(zone, Date.now())}`])}\n${fixed(['TIME', ...SCAN_HEADERS.filter((h) => h !== 'HEARD')])}`);
    // The last sighting printed per address: a line each time one is heard again or its outcome changes.
    const printed = new Map<string, string>();
    let report = first;
    let unavailable: string | undefined;
    for (;;) {
      if (!report.ble.available) {
        if (unavailable !== report.ble.reason) write(io.stderr, noBleLine(report.ble.reason));
        unavailable = report.ble.reason;
      } else {
        unavailable = undefined;
        const now = Date.now();
        for (const p of [...report.peripherals].reverse()) {
          const key = `${p.lastSeenAt}/${p.lastOutcome?.at ?? 0}`;
          if (printed.get(p.address) === key) continue;
          printed.set(p.address, key);
          if (json) write(io.stdout, JSON.stringify(p));
          else {
            const [address = '', name = '', rssi = '', versions = '', , last = '', deny = ''] = scanRow(p, now);
            write(io.stdout, fixed([clockTime(p.lastSeenAt, zone), address, name, rssi, versions, last, deny]));
          }
        }
        // Forget what the daemon forgot, so the map stays as bounded as its log.
        const live = new Set(report.peripherals.map((p) => p.address));
        for (const a of printed.keys()) if (!live.has(a)) printed.delete(a);
      }
      await pause(interval, signal);
      if (signal.aborted) return EXIT_OK;
      report = await getJson<ScanReport>(sock, '/v1/scan');
    }
  });
}

export function run(args: string[], io: CliIO): Promise<number> {
  return untilSignal((signal) => runScan(args, io, signal));
}
