/**
 * `gatehouse peripherals [DEV] [--failing]`: the peripherals connected now, the ones trying and
 * failing, or one device's whole story (connections, failures and what to do, lease, events).
 */
import type { DecisionEvent } from '../pipeline/types.js';
import { roundMs } from '../status/json.js';
import { adviceFor } from '../status/reason-advice.js';
import type { EventPage, FailingPeripheral, PeripheralInfo } from '../status/types.js';
import { SOCKET_OPTIONS, TIME_OPTIONS, devArgument, parse, socketPath } from './args.js';
import { getJson } from './client.js';
import { guard } from './command.js';
import { EVENT_HEADERS, eventLegend, eventRow } from './events.js';
import { age, clockTime, duration, keyValues, legend, remoteCell, table, until, zoneName, type Zone } from './format.js';
import { EXIT_OK, UsageError, write, type CliIO } from '../../common/cli-io.js';

export const HELP = `Usage: gatehouse peripherals [DEV] [--failing] [--utc] [--json] [--socket PATH]

List the peripherals connected now: DEVICE, TRANSPORT, STATE (pending: connected, not yet
welcomed; welcomed: authenticated), SINCE (how long in that state), OFFLINE (welcomed under a
cached lease while the backend was unreachable), LEASE EXPIRES, REMOTE (the peer's address and
port; a BLE address is marked: it is never an identity), and for a protocol-v2 session PROTO
(its version), AGE, FRAMES IN/OUT (msg frames relaying broker messages included), DROPS (frames
dropped) and CMDS (commands the gateway holds for the device, not yet acknowledged). A legend
line says what each - means.

--failing lists the devices whose recent attempts were rejected (in the last hour, since their
last welcome): how many times, the last reason, when they last tried and when the next attempt
is allowed (the reject's retry, or the BLE back-off), then what each reason means and what to do.

With DEV: that device's whole story: its connections now (with a v2 session and the commands
held for it), its recent failures with the advice, its lease, and its events still in the
daemon's ring.

Options:
  --failing        devices trying and failing, with advice
  --utc            times in UTC instead of the local time zone
  --json           print the /v1/peripherals (or /v1/failing) document; with DEV,
                   {"dev", "connections", "failing", "events"}
  --socket PATH    status socket (default $GATEHOUSE_STATUS_SOCKET or /run/gatehouse/status.sock)
  -h, --help       show this help

Exit codes: 0 ok, 1 the daemon could not be asked, 2 usage error.
`;

const OPTIONS = {
  ...SOCKET_OPTIONS,
  ...TIME_OPTIONS,
  failing: { type: 'boolean' },
} as const;

export function renderPeripherals(list: PeripheralInfo[], nowMs: number): string {
  if (list.length === 0) return 'no peripherals connected';
  const rows = list.map((p) => [
    p.dev,
    p.transport,
    p.state,
    age(p.since, nowMs),
    p.offline ? 'yes' : 'no',
    p.leaseExp === undefined ? '-' : until(p.leaseExp * 1000, nowMs),
    remoteCell(p.transport, p.remote),
    p.session !== undefined ? `v${p.session.version}` : p.state === 'welcomed' ? 'v1' : '-',
    p.session === undefined ? '-' : duration(p.session.ageMs / 1000),
    p.session === undefined ? '-' : `${p.session.framesIn}/${p.session.framesOut}`,
    p.session === undefined ? '-' : String(p.session.drops),
    p.commandsPending === undefined ? '-' : String(p.commandsPending),
  ]);
  const notes: string[] = [];
  if (rows.some((r) => r[5] === '-')) notes.push('LEASE EXPIRES -: not welcomed yet, no lease');
  if (rows.some((r) => r[6] === '-')) notes.push('REMOTE -: not reported by the transport');
  if (rows.some((r) => r[7] === '-')) notes.push('PROTO -: not welcomed yet');
  if (rows.some((r) => r[8] === '-')) notes.push('AGE, FRAMES, DROPS, CMDS -: no protocol-v2 session (v1 has no frames)');
  const out = table(['DEVICE', 'TRANSPORT', 'STATE', 'SINCE', 'OFFLINE', 'LEASE EXPIRES', 'REMOTE', 'PROTO', 'AGE', 'FRAMES IN/OUT', 'DROPS', 'CMDS'], rows);
  return notes.length === 0 ? out : `${out}\n${legend(notes)}`;
}

function nextTry(f: FailingPeripheral, nowMs: number): string {
  if (f.nextAttemptAt === undefined || f.nextAttemptAt <= nowMs) return 'now';
  return `${until(f.nextAttemptAt, nowMs)} (${f.nextAttemptBy === 'ble-hold-off' ? 'BLE back-off' : 'retry'})`;
}

/** Each distinct reason once: what it means, what to do. */
function adviceLines(reasons: string[]): string[] {
  const lines: string[] = [];
  for (const r of [...new Set(reasons)]) {
    const a = adviceFor(r);
    lines.push(`${r}: ${a.meaning}`, `  -> ${a.action}`);
  }
  return lines;
}

export function renderFailing(list: FailingPeripheral[], nowMs: number): string {
  if (list.length === 0) return 'no peripheral has failed in the last hour';
  const rows = list.map((f) => [f.dev, f.transport, String(f.failures), f.lastReason, age(f.lastAt, nowMs), nextTry(f, nowMs), remoteCell(f.transport, f.remote)]);
  const notes = ['NEXT TRY now: the gateway imposes no wait'];
  if (rows.some((r) => r[6] === '-')) notes.push('REMOTE -: not reported by the transport');
  return [table(['DEVICE', 'TRANSPORT', 'FAILURES', 'LAST REASON', 'LAST TRY', 'NEXT TRY', 'REMOTE'], rows), legend(notes), '', ...adviceLines(list.map((f) => f.lastReason))].join('\n');
}

/** One device's story, as `--json` prints it. */
export interface PeripheralStory {
  dev: string;
  connections: PeripheralInfo[];
  failing: FailingPeripheral | null;
  events: DecisionEvent[];
}

export function renderStory(s: PeripheralStory, nowMs: number, zone: Zone): string {
  const pairs: [string, string][] = [['Device', s.dev]];
  if (s.connections.length === 0) pairs.push(['Connected', 'no (no open MQTT connection, no recent BLE welcome)']);
  for (const c of s.connections) {
    pairs.push(['Connected', `${c.transport} ${c.connection}, ${c.state} since ${clockTime(c.since, zone)} (${age(c.since, nowMs)}), remote ${remoteCell(c.transport, c.remote)}`]);
    pairs.push(['Lease', c.leaseExp === undefined ? 'none yet (not welcomed)' : `expires ${clockTime(c.leaseExp * 1000, zone)} (${until(c.leaseExp * 1000, nowMs)})${c.offline ? ', welcomed offline under a cached lease' : ', welcomed online'}`]);
    if (c.session !== undefined) {
      pairs.push(['Session', `protocol v${c.session.version}, ${duration(c.session.ageMs / 1000)} old, frames in/out ${c.session.framesIn}/${c.session.framesOut}, ${c.session.drops} dropped; broker messages relayed ${c.session.msgs}, not relayed ${c.session.msgDrops} (queue full or session ended)`]);
    }
    if (c.commandsPending !== undefined) pairs.push(['Commands', `${c.commandsPending} held for this device (relayed one at a time, each until acked or expired)`]);
  }
  const f = s.failing;
  if (f === null) pairs.push(['Failing', 'no rejects in the last hour since its last welcome']);
  else {
    const counts = Object.entries(f.reasons).map(([r, n]) => `${n} ${r}`).join(', ');
    pairs.push(['Failing', `${f.failures} reject(s) since ${clockTime(f.firstAt, zone)} (${counts}); last ${f.lastReason} ${age(f.lastAt, nowMs)}, next try ${nextTry(f, nowMs)}`]);
    pairs.push(['Meaning', f.advice.meaning]);
    pairs.push(['Action', f.advice.action]);
  }
  pairs.push(['Times', zoneName(zone, nowMs)]);
  const events = s.events.length === 0
    ? `no events for ${s.dev} in the daemon's ring (it keeps the newest status.eventRingSize decisions)`
    : `${table(EVENT_HEADERS, s.events.map((e) => eventRow(e, zone)))}\n${eventLegend(zone, nowMs)}`;
  return `${keyValues(pairs)}\n\nRecent events:\n${events}`;
}

async function story(sock: string, dev: string): Promise<PeripheralStory> {
  const [p, f] = await Promise.all([
    getJson<{ peripherals: PeripheralInfo[] }>(sock, '/v1/peripherals'),
    getJson<{ failing: FailingPeripheral[] }>(sock, '/v1/failing'),
  ]);
  // The ring bounds the pages: page until a short one.
  const events: DecisionEvent[] = [];
  let since = 0;
  for (;;) {
    const page = await getJson<EventPage>(sock, `/v1/events?since=${since}&limit=1000&dev=${encodeURIComponent(dev)}`);
    events.push(...page.events.map((e) => ({ ...e, latencyMs: roundMs(e.latencyMs) })));
    since = page.next;
    if (page.events.length < 1000) break;
  }
  return { dev, connections: p.peripherals.filter((x) => x.dev === dev), failing: f.failing.find((x) => x.dev === dev) ?? null, events };
}

export function run(args: string[], io: CliIO): Promise<number> {
  const cmd = 'gatehouse peripherals';
  return guard(cmd, io, async () => {
    const { values, positionals } = parse(cmd, args, OPTIONS, true);
    if (values.help === true) {
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    if (positionals.length > 1) throw new UsageError(`${cmd}: one device at a time, got ${positionals.length} (see ${cmd} --help)`);
    const dev = devArgument(cmd, 'DEV', positionals[0]);
    if (dev !== undefined && values.failing === true) throw new UsageError(`${cmd}: DEV and --failing do not combine (DEV shows its failures)`);
    const sock = socketPath(values.socket, io.env);
    const zone: Zone = values.utc === true ? 'utc' : 'local';
    const json = values.json === true;
    if (dev !== undefined) {
      const s = await story(sock, dev);
      write(io.stdout, json ? JSON.stringify(s, null, 2) : renderStory(s, Date.now(), zone));
    } else if (values.failing === true) {
      const r = await getJson<{ failing: FailingPeripheral[] }>(sock, '/v1/failing');
      write(io.stdout, json ? JSON.stringify(r, null, 2) : renderFailing(r.failing, Date.now()));
    } else {
      const r = await getJson<{ peripherals: PeripheralInfo[] }>(sock, '/v1/peripherals');
      write(io.stdout, json ? JSON.stringify(r, null, 2) : renderPeripherals(r.peripherals, Date.now()));
    }
    return EXIT_OK;
  });
}
