/** `gatehouse events [--follow]`: recent decisions from the daemon's bounded event ring. */
import type { DecisionEvent } from '../pipeline/types.js';
import { roundMs } from '../status/json.js';
import type { EventPage } from '../status/types.js';
import { SOCKET_OPTIONS, TIME_OPTIONS, devArgument, intOption, parse, socketPath } from './args.js';
import { getJson } from './client.js';
import { guard, pause, untilSignal } from './command.js';
import { clockTime, latency, legend, remoteCell, table, zoneName, type Zone } from './format.js';
import { EXIT_OK, write, type CliIO } from '../../common/cli-io.js';

export const HELP = `Usage: gatehouse events [--dev DEV] [--since SEQ] [--limit N] [--follow] [--utc] [--json] [--socket PATH]

Show recent authentication decisions (challenge, welcome, reject with its reason, offline
decisions), oldest first. The daemon keeps the newest status.eventRingSize events.
Columns: SEQ, TIME (local time; --utc for UTC), TRANSPORT, DEVICE, OUTCOME, REASON (of a
reject), LATENCY (hello to answer), OFFLINE (welcomed under a cached lease), REMOTE (the
peer's address: for display, never an identity). A legend line says what each - means.

Options:
  --dev DEV          only this device's events (the daemon filters)
  --since SEQ        only events after sequence number SEQ (default 0: all kept)
  --limit N          at most N events per request (default 100, at most 1000)
  -f, --follow       keep printing new events until interrupted (Ctrl-C)
  --interval-ms MS   poll interval with --follow (default 1000)
  --utc              times in UTC instead of the local time zone
  --json             one JSON object per line (NDJSON); latencyMs to the microsecond
  --socket PATH      status socket (default $GATEHOUSE_STATUS_SOCKET or /run/gatehouse/status.sock)
  -h, --help         show this help

Exit codes: 0 ok (and on Ctrl-C with --follow), 1 the daemon could not be asked, 2 usage error.
`;

const OPTIONS = {
  ...SOCKET_OPTIONS,
  ...TIME_OPTIONS,
  dev: { type: 'string' },
  since: { type: 'string' },
  limit: { type: 'string' },
  follow: { type: 'boolean', short: 'f' },
  'interval-ms': { type: 'string' },
} as const;

export const EVENT_HEADERS = ['SEQ', 'TIME', 'TRANSPORT', 'DEVICE', 'OUTCOME', 'REASON', 'LATENCY', 'OFFLINE', 'REMOTE'];

export function eventRow(e: DecisionEvent, zone: Zone): string[] {
  return [String(e.seq), clockTime(e.at, zone), e.transport, e.dev ?? '-', e.outcome, e.reason ?? '-', latency(e.latencyMs), e.offline ? 'yes' : 'no', remoteCell(e.transport, e.remote)];
}

/** What `-` means in the events table, and the time zone of TIME. */
export function eventLegend(zone: Zone, nowMs: number): string {
  return legend(['DEVICE -: no device id yet', 'REASON -: not a reject', 'REMOTE -: not reported', `TIME in ${zoneName(zone, nowMs)}`]);
}

/** One event as --json prints it: latency to the microsecond. */
export function eventJson(e: DecisionEvent): string {
  return JSON.stringify({ ...e, latencyMs: roundMs(e.latencyMs) });
}

/** The command with an explicit stop signal (tests; `run` ties it to SIGINT/SIGTERM). */
export function runEvents(args: string[], io: CliIO, signal: AbortSignal): Promise<number> {
  return guard('gatehouse events', io, async () => {
    const cmd = 'gatehouse events';
    const { values } = parse(cmd, args, OPTIONS);
    if (values.help === true) {
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    let since = intOption(cmd, 'since', values.since, 0, Number.MAX_SAFE_INTEGER);
    const limit = intOption(cmd, 'limit', values.limit, 100, 1000);
    const interval = intOption(cmd, 'interval-ms', values['interval-ms'], 1000, 60000);
    const sock = socketPath(values.socket, io.env);
    const json = values.json === true;
    const zone: Zone = values.utc === true ? 'utc' : 'local';
    const dev = devArgument(cmd, '--dev', values.dev);
    const query = (): string => `/v1/events?since=${since}&limit=${limit}${dev === undefined ? '' : `&dev=${encodeURIComponent(dev)}`}`;
    if (values.follow !== true) {
      // Page until drained (the ring bounds the total), then one aligned table.
      const all: DecisionEvent[] = [];
      for (;;) {
        const page = await getJson<EventPage>(sock, query());
        all.push(...page.events);
        since = page.next;
        if (page.events.length < limit) break;
      }
      if (json) for (const e of all) write(io.stdout, eventJson(e));
      else write(io.stdout, all.length === 0 ? `no events${dev === undefined ? '' : ` for ${dev}`} in the daemon's ring` : `${table(EVENT_HEADERS, all.map((e) => eventRow(e, zone)))}\n${eventLegend(zone, Date.now())}`);
      return EXIT_OK;
    }
    if (!json) write(io.stdout, `${eventLegend(zone, Date.now())}\n${fixed(EVENT_HEADERS)}`);
    let first = true;
    while (!signal.aborted) {
      const page = await getJson<EventPage>(sock, query());
      if (page.truncated && !first) write(io.stderr, 'gatehouse events: some events were dropped (the ring overflowed or the daemon restarted)');
      first = false;
      for (const e of page.events) write(io.stdout, json ? eventJson(e) : fixed(eventRow(e, zone)));
      since = page.next;
      if (page.events.length < limit) await pause(interval, signal);
    }
    return EXIT_OK;
  });
}

/** Follow mode prints as events come, so columns have fixed widths instead of measured ones. */
const WIDTHS = [7, 19, 9, 24, 9, 19, 8, 7];
function fixed(cells: string[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(WIDTHS[i] ?? 0))).join('  ');
}

export function run(args: string[], io: CliIO): Promise<number> {
  return untilSignal((signal) => runEvents(args, io, signal));
}
