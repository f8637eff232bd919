/** `gatehouse events [--follow]`: recent decisions from the daemon's bounded event ring. */
import type { DecisionEvent } from '../pipeline/types.js';
import type { EventPage } from '../status/types.js';
import { SOCKET_OPTIONS, intOption, parse, socketPath } from './args.js';
import { getJson } from './client.js';
import { guard } from './command.js';
import { isoTime, table } from './format.js';
import { EXIT_OK, write, type CliIO } from '../../common/cli-io.js';

export const HELP = `Usage: gatehouse events [--since SEQ] [--limit N] [--follow] [--json] [--socket PATH]

Show recent authentication decisions (welcome, reject with its reason, offline decisions),
oldest first. The daemon keeps the newest status.eventRingSize events.

Options:
  --since SEQ        only events after sequence number SEQ (default 0: all kept)
  --limit N          at most N events per request (default 100, at most 1000)
  -f, --follow       keep printing new events until interrupted (Ctrl-C)
  --interval-ms MS   poll interval with --follow (default 1000)
  --json             one JSON object per line (NDJSON)
  --socket PATH      status socket (default $GATEHOUSE_STATUS_SOCKET or /run/gatehouse/status.sock)
  -h, --help         show this help

Exit codes: 0 ok (and on Ctrl-C with --follow), 1 the daemon could not be asked, 2 usage error.
`;

const OPTIONS = {
  ...SOCKET_OPTIONS,
  since: { type: 'string' },
  limit: { type: 'string' },
  follow: { type: 'boolean', short: 'f' },
  'interval-ms': { type: 'string' },
} as const;

const HEADERS = ['SEQ', 'TIME', 'TRANSPORT', 'DEVICE', 'OUTCOME', 'REASON', 'LATENCY', 'OFFLINE'];

function row(e: DecisionEvent): string[] {
  return [String(e.seq), isoTime(e.at), e.transport, e.dev ?? '-', e.outcome, e.reason ?? '-', `${e.latencyMs}ms`, e.offline ? 'yes' : 'no'];
}

function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
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
    if (values.follow !== true) {
      // Page until drained (the ring bounds the total), then one aligned table.
      const all: DecisionEvent[] = [];
      for (;;) {
        const page = await getJson<EventPage>(sock, `/v1/events?since=${since}&limit=${limit}`);
        all.push(...page.events);
        since = page.next;
        if (page.events.length < limit) break;
      }
      if (json) for (const e of all) write(io.stdout, JSON.stringify(e));
      else write(io.stdout, all.length === 0 ? 'no events' : table(HEADERS, all.map(row)));
      return EXIT_OK;
    }
    if (!json) write(io.stdout, fixed(HEADERS));
    let first = true;
    while (!signal.aborted) {
      const page = await getJson<EventPage>(sock, `/v1/events?since=${since}&limit=${limit}`);
      if (page.truncated && !first) write(io.stderr, 'gatehouse events: some events were dropped (the ring overflowed or the daemon restarted)');
      first = false;
      for (const e of page.events) write(io.stdout, json ? JSON.stringify(e) : fixed(row(e)));
      since = page.next;
      if (page.events.length < limit) await wait(interval, signal);
    }
    return EXIT_OK;
  });
}

/** Follow mode prints as events come, so columns have fixed widths instead of measured ones. */
const WIDTHS = [7, 20, 9, 24, 9, 19, 7, 3];
function fixed(cells: string[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(WIDTHS[i] ?? 0))).join('  ');
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await runEvents(args, io, ac.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
