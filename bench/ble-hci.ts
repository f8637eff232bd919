/**
 * `node --import tsx bench/ble-hci.ts [--runs N]`: timings of one BLE exchange on the HCI test
 * stack (noble's HCI layer over a Bumble controller's UART, a Bumble peripheral, the real
 * pipeline and the reference backend), medians over N runs (default 5), each with a fresh link
 * process and a fresh noble. Times come from the HCI trace that Bumble's controller writes (one
 * clock), except poweredOn (the transport's start to its first poweredOn). docs/ble.md quotes them.
 */
import { parseArgs } from 'node:util';
import type { HciTraceRecord } from '../testkit/bumble.js';
import { startBackend, startHciRig } from '../testkit/ble-hci-rig.js';

const { values } = parseArgs({ options: { runs: { type: 'string' }, interval: { type: 'string' } } });
const runs = Number(values.runs ?? 5);

function at(trace: HciTraceRecord[], match: (r: HciTraceRecord) => boolean, from = 0): HciTraceRecord {
  const r = trace.slice(from).find(match);
  if (!r) throw new Error('trace lacks an expected packet');
  return r;
}

function measure(trace: HciTraceRecord[]): Record<string, number> {
  const h2c = (r: HciTraceRecord): boolean => r.dir === 'host->controller';
  const c2h = (r: HciTraceRecord): boolean => r.dir === 'controller->host';
  const lastScanEnable = trace.map((r, i) => (h2c(r) && r.name === 'HCI_LE_SET_SCAN_ENABLE_COMMAND' ? i : -1)).filter((i) => i >= 0);
  const scanIdx = lastScanEnable.find((i) => trace.slice(i).some((r) => r.name?.includes('ADVERTISING_REPORT'))) ?? 0;
  const scan = trace[scanIdx]!;
  const report = at(trace, (r) => c2h(r) && (r.name ?? '').includes('ADVERTISING_REPORT'), scanIdx);
  const create = at(trace, (r) => h2c(r) && r.name === 'HCI_LE_CREATE_CONNECTION_COMMAND');
  const up = at(trace, (r) => c2h(r) && /LE_(ENHANCED_)?CONNECTION_COMPLETE/.test(r.name ?? ''));
  const firstDiscovery = at(trace, (r) => h2c(r) && r.att === '0x10');
  const writes = trace.filter((r) => h2c(r) && r.att === '0x12');
  const firstNotify = at(trace, (r) => c2h(r) && r.att === '0x1b');
  const lastWriteBeforeNotify = writes.filter((w) => w.ms <= firstNotify.ms).at(-1)!;
  const down = at(trace, (r) => c2h(r) && r.name === 'HCI_DISCONNECTION_COMPLETE_EVENT');
  return {
    scanToReportMs: report.ms - scan.ms,
    reportToCreateConnectionMs: create.ms - report.ms,
    connectMs: up.ms - create.ms,
    discoveryAndSubscribeMs: writes[0]!.ms - firstDiscovery.ms,
    challengeToHelloMs: firstNotify.ms - lastWriteBeforeNotify.ms,
    connectionToDisconnectionMs: down.ms - up.ms,
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const backend = await startBackend();
const rows: Record<string, number>[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const rig = await startHciRig(backend, [{ n: 100 + i, name: 'b', mtu: 247 }]);
    try {
      const o = await rig.link.outcomeOf('b');
      if (o.outcome !== 'welcomed') throw new Error(`run ${i}: ${JSON.stringify(o)}`);
      await rig.exchangeOf(`c0:de:00:00:01:${(100 + i).toString(16)}`);
      // The disconnection completes after the exchange event; wait for it in the trace (bounded).
      const deadline = Date.now() + 5_000;
      let trace = await rig.link.trace();
      while (!trace.some((r) => r.name === 'HCI_DISCONNECTION_COMPLETE_EVENT') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        trace = await rig.link.trace();
      }
      rows.push({ poweredOnMs: rig.poweredOnMs, ...measure(trace) });
    } finally {
      await rig.stop();
    }
  }
} finally {
  await backend.close();
}
const summary = Object.fromEntries(
  Object.keys(rows[0]!).map((k) => {
    const xs = rows.map((r) => r[k]!);
    return [k, { median: Math.round(median(xs) * 100) / 100, min: Math.round(Math.min(...xs) * 100) / 100, max: Math.round(Math.max(...xs) * 100) / 100 }];
  }),
);
process.stdout.write(`${JSON.stringify({ runs, summary }, null, 2)}\n`);
