/** What the data-plane phase's figures say and what bounds them (docs/performance.md, under the phase), from the run's own figures. */
import type { BacklogResult, ClosedResult, FullQueueResult, OpenResult } from '../dataplane-steps.js';
import type { Spread } from '../stats.js';

export function dataplaneNotes(r: { telemetry: ClosedResult; plain: ClosedResult; open: OpenResult; backlog: BacklogResult; full: FullQueueResult; queueBytes: number; quick: boolean }): string {
  const { telemetry: t, plain, open, backlog, full } = r;
  const rows = (t.rowsPerSec as Spread).median;
  const times = Math.round((t.cpu.daemonUsPerOp / Math.max(1, plain.cpu.daemonUsPerOp)) * 10) / 10;
  return [
    `**Against plain publishes.** The baseline is a QoS 1 publish of a frame's size on a device's v2 up topic from a connection without a session: ` +
      `the broker's frame guard, ACL, routing and PUBACK, after which the ingress discards it unread. It costs the broker ${plain.cpu.daemonUsPerOp} µs; ` +
      `a telemetry frame costs the daemon ${t.cpu.daemonUsPerOp} µs (${times}x): it is opened (AEAD, CBOR, replay window), held to the lease policy, ` +
      `committed before its receipt (one SQLite transaction with an fsync per event-loop turn, on the event loop: better-sqlite3 is synchronous), ` +
      `published for local subscribers, receipted (a sealed frame per session per turn) and uploaded (base64 JSON over HTTPS; the removal after the answer). ` +
      `The simulated devices seal and open every frame and the backend stores every row on the same two cores (generators ${t.cpu.generators}, backend ${t.cpu.backend} cores in the telemetry runs). ` +
      `Half the plain rate would need a frame, end to end, to cost about two plain publishes: with durable storage and authenticated encryption it cannot, so this target is a design bound on two shared cores rather than a hot path.`,
    `**Rows against receipts.** While devices push as fast as receipts allow, rows reach the store at ${rows}/s against ${t.perSec.median} frames/s receipted: ` +
      `the uploader (up to 4 requests of at most 256 records in flight while there is a backlog; one at a time left the backend idle while the queue grew: docs/performance-history.md) shares the event loop with the commits, which take most of it, and the queue absorbs the difference, which is what it is for. ` +
      `Once the input stops it drains at ${backlog.drainRowsPerSec} rows/s (the backlog rows). ` +
      `The ${backlog.restoreToFirstRowSec} s from the backend's restart to its first row is the uploader's backoff (at most 30 s) and circuit breaker (\`backend.circuit.openMs\`), not the drain.`,
    `**Latency at half load.** At ${open.rate} frames/s the p50 is ${open.p50.median} ms and the p99 ${open.p99.median} ms. ` +
      `Each commit's fsync blocks the event loop, and at half load the commits are small and many: every frame that arrives meanwhile waits for it. ` +
      `docs/performance-history.md (2026-12-03, "The data plane") measured this: with the state directory on tmpfs the same open loop's p50 and p99 fall several-fold. ` +
      `What would move it: commit in a worker thread with its own connection, so that the loop keeps opening frames while the disk syncs (the receipt still follows the commit).`,
    `**Memory.** ${r.quick ? `--quick fills a ${r.queueBytes}-byte queue, not the default: this RSS is not the default-size figure.` : `The default ${r.queueBytes}-byte queue held ${full.frames} records of ${full.bodyBytes} bytes when the receipts said busy.`} ` +
      `The records are in \`uplink.db\`, not in the heap; RSS went from ${full.rssBeforeMb} MB before the fill to ${full.rssMb} MB with the queue full (V8 heap in use ${full.heapUsedMb} MB then): ` +
      `what the fill adds is the daemon working at full rate (buffers, heap it keeps after load), not the queue's contents.`,
  ].join('\n\n');
}
