/**
 * The data plane (issue #16's bench acceptance, and #15's protected-pub line): telemetry frames
 * from v2 sessions through the daemon's durable queue to rows in the backend's store, against
 * plain QoS 1 publishes through the same embedded broker (the echo worker's: no crypto, no
 * storage); latency from a frame's send to its receipt at half that load; the drain of a backlog
 * built up during a backend outage (every frame stored exactly once); the daemon's RSS with a
 * full default-size queue.
 */
import { Daemon } from '../harness.js';
import { DEFAULT_CONFIG } from '../../testkit/component-defaults.js';
import { DpGenerator, onAll, ReplicaBackend, setupGenerators } from '../dataplane-env.js';
import { backlogRun, closedRuns, fullQueueRun, openRuns, rowsReach } from '../dataplane-steps.js';
import type { Phase } from '../phase.js';
import { fmt, round, type Spread } from '../stats.js';
import { dataplaneNotes } from './dataplane-notes.js';
import { sizes } from './sizes.js';

/** --quick: the full-queue run fills a queue of this many bytes (the default is the schema's). */
const QUICK_QUEUE_BYTES = 4 * 1024 * 1024;

function dpSizes(ctx: { quick: boolean }): { sessions: number; window: number; bodyBytes: number; fillBodyBytes: number; backlog: number; durationMs: number; openDurationMs: number } {
  const { durationMs, openDurationMs } = sizes(ctx);
  // 256 sessions, 8 unreceipted frames each (the replay window is 64), 64-byte bodies.
  return { sessions: 256, window: 8, bodyBytes: 64, fillBodyBytes: 1024, backlog: ctx.quick ? 5000 : 100_000, durationMs, openDurationMs };
}

const pct = (x: number): string => `${Math.round(x * 100)} %`;

export const dataplanePhase: Phase = {
  key: 'dataplane',
  title: 'Data plane: telemetry from v2 sessions to rows at the backend',
  needs: ['echo'],
  async run(ctx) {
    const z = dpSizes(ctx);
    const runs = ctx.runs;
    const gens = [new DpGenerator(), new DpGenerator()];
    const replica = await ReplicaBackend.start(ctx.env);
    const defaultQueueBytes = DEFAULT_CONFIG.dataPlane.queue.maxBytes;
    const queueBytes = ctx.quick ? QUICK_QUEUE_BYTES : defaultQueueBytes;
    try {
      await setupGenerators(gens, ctx.env, ctx.v2Devices.slice(0, z.sessions));
      const backend = { backend: { url: replica.url } };

      // 1. Telemetry: closed loop over every session, one session alone, then the open loop at half.
      const gw = await ctx.startGateway('dataplane', { config: backend });
      let telemetry, single, open, storedAll;
      try {
        const afterId = replica.lastId();
        await onAll(gens, { op: 'connect', host: '127.0.0.1', port: gw.port, parallel: 32 }, { strict: true });
        telemetry = await closedRuns(gens, gw, { op: 'closed', window: z.window, bodyBytes: z.bodyBytes, durationMs: z.durationMs, runs, replica, afterId });
        ctx.log(`      telemetry, ${z.sessions} sessions: ${fmt(telemetry.perSec, ' frames/s')} receipted, ${fmt(telemetry.rowsPerSec as Spread, ' rows/s')} stored; p99 ${telemetry.p99.median} ms; daemon ${telemetry.cpu.daemonUsPerOp} µs/frame`);
        single = await closedRuns(gens, gw, { op: 'closed', window: z.window, bodyBytes: z.bodyBytes, durationMs: z.durationMs, runs, sessions: 1 });
        ctx.log(`      one session: ${fmt(single.perSec, ' frames/s')}`);
        // Everything receipted so far reaches the store before the latency runs start.
        let receipted = telemetry.receipted + single.receipted;
        await rowsReach(replica, afterId, receipted, 120_000);
        const half = Math.max(10, Math.round(Math.min(telemetry.perSec.median, (telemetry.rowsPerSec as Spread).median) / 2));
        open = await openRuns(gens, { rate: half, durationMs: z.openDurationMs, runs, bodyBytes: z.bodyBytes });
        ctx.log(`      open loop ${half} frames/s: achieved ${open.achieved.median}/s, p50 ${open.p50.median} ms, p99 ${fmt(open.p99, ' ms')}`);
        receipted += open.receipted;
        const reach = await rowsReach(replica, afterId, receipted, 120_000);
        storedAll = { receipted, stored: reach.stored };
        await onAll(gens, { op: 'close' });
      } finally {
        await gw.stop();
      }

      // 2. The baseline: plain QoS 1 publishes of a frame's size through the echo worker's broker.
      const echo = await Daemon.start('echo-worker.js', ['100000']);
      let plain;
      try {
        await onAll(gens, { op: 'plain-connect', host: '127.0.0.1', port: echo.port, parallel: 32 }, { strict: true });
        plain = await closedRuns(gens, echo, { op: 'plain', window: z.window, bodyBytes: z.bodyBytes, frameBytes: telemetry.frameBytes, durationMs: z.durationMs, runs });
        await onAll(gens, { op: 'close' });
      } finally {
        await echo.stop();
      }
      ctx.log(`      plain QoS 1 publishes (${telemetry.frameBytes} bytes): ${fmt(plain.perSec, '/s')}; broker ${plain.cpu.daemonUsPerOp} µs/publish`);

      // 3. A backlog through an outage, then the queue filled until busy.
      const gw2 = await ctx.startGateway('dataplane-backlog', { config: { ...backend, ...(ctx.quick ? { dataPlane: { queue: { maxBytes: queueBytes } } } : {}) } });
      let backlog, full;
      try {
        await onAll(gens, { op: 'connect', host: '127.0.0.1', port: gw2.port, parallel: 32 }, { strict: true });
        backlog = await backlogRun(gens, replica, { frames: z.backlog, window: z.window, bodyBytes: z.bodyBytes, log: ctx.log });
        ctx.log(`      drain: ${backlog.drainRowsPerSec} rows/s (${backlog.receipted} in ${backlog.drainSec} s, first row ${backlog.restoreToFirstRowSec} s after the restart); exactly once: ${backlog.exactlyOnce}`);
        full = await fullQueueRun(gens, gw2, replica, { window: z.window, bodyBytes: z.fillBodyBytes });
        ctx.log(`      full queue (${queueBytes} bytes): ${full.frames} frames of ${full.bodyBytes} bytes in ${full.fillSec} s, RSS ${full.rssBeforeMb} → ${full.rssMb} MB`);
        await onAll(gens, { op: 'close' });
      } finally {
        await gw2.stop();
      }

      const echoRt = (ctx.earlier.echo as { roundTripsPerSec: Spread }).roundTripsPerSec.median;
      const rows = (telemetry.rowsPerSec as Spread).median;
      const fraction = round(rows / plain.perSec.median, 2);
      const frameFraction = round(telemetry.perSec.median / plain.perSec.median, 2);
      return {
        summary: {
          sessions: z.sessions,
          window: z.window,
          bodyBytes: z.bodyBytes,
          frameBytes: telemetry.frameBytes,
          telemetry,
          single,
          plain,
          fractionOfPlain: fraction,
          open,
          storedAll,
          backlog,
          fullQueue: { ...full, queueBytes, defaultQueueBytes },
          echoRoundTripsPerSec: echoRt,
        },
        rows: [
          [`plain QoS 1 publishes/s through the embedded broker (${z.sessions} connections, ${z.window} awaiting PUBACK each, ${telemetry.frameBytes}-byte payload; no crypto, no storage)`, fmt(plain.perSec)],
          [`**telemetry frames/s receipted** (${z.sessions} v2 sessions, ${z.window} unreceipted each, ${z.bodyBytes}-byte bodies)`, fmt(telemetry.perSec)],
          ['**rows/s stored at the backend** over the same runs', fmt(telemetry.rowsPerSec as Spread)],
          ['… rows/s ÷ plain publishes/s (frames/s ÷ plain)', `${pct(fraction)} (${pct(frameFraction)})`],
          ['… frames/s ÷ the no-auth MQTT round trips/s of the `echo` phase', `${pct(telemetry.perSec.median / echoRt)} of ${echoRt}`],
          ['closed-loop latency send → receipt, p50 / p99 (ms)', `${telemetry.p50.median} / ${telemetry.p99.median}`],
          ['one session alone, frames/s receipted', fmt(single.perSec)],
          ['CPU per frame: daemon / broker alone per plain publish (µs)', `${telemetry.cpu.daemonUsPerOp} / ${plain.cpu.daemonUsPerOp}`],
          ['cores used in the telemetry runs: daemon / generators / backend', `${telemetry.cpu.daemon} / ${telemetry.cpu.generators} / ${telemetry.cpu.backend}`],
          [`open loop at half the sustained rate, ${open.rate} frames/s (achieved ${open.achieved.median}/s): p50 / p95 / p99 (ms)`, `${open.p50.median} / ${open.p95.median} / ${fmt(open.p99)}`],
          ['frames receipted in these runs / rows stored', `${storedAll.receipted} / ${storedAll.stored}`],
          [`backlog: ${backlog.frames} frames receipted with the backend down (s)`, `${backlog.receipted} in ${backlog.pushSec}`],
          ['**backlog drain**, rows/s (first row to last)', `${backlog.drainRowsPerSec} (${backlog.drainSec} s)`],
          ['… backend restart → first row stored (s; uploader backoff and breaker)', `${backlog.restoreToFirstRowSec}`],
          ['… stored exactly once (sessions whose rows are exactly their receipted frames)', `${backlog.exactlyOnce ? 'yes' : 'NO'} (${backlog.sessionsExact} of ${backlog.sessions}; ${backlog.stored} rows)`],
          [
            `**daemon RSS with a full queue** (${ctx.quick ? `--quick: a ${queueBytes}-byte queue, not the default ${defaultQueueBytes}` : `the default ${defaultQueueBytes} bytes`}; ${full.frames} frames of ${full.bodyBytes} bytes until busy) (MB)`,
            `${full.rssMb} (before filling ${full.rssBeforeMb}, peak ${full.peakMb}; V8 heap in use ${full.heapUsedMb})`,
          ],
        ],
        targets: [
          { target: 'rows/s stored >= 50% of plain QoS 1 publishes/s', value: `${pct(fraction)} (${rows} vs ${plain.perSec.median}/s)`, met: fraction >= 0.5 },
          { target: `p99 send → receipt <= 50 ms at half the sustained rate (${open.rate}/s)`, value: `${open.p99.median} ms`, met: open.p99.median <= 50 },
          { target: 'every backlog frame stored exactly once', value: `${backlog.stored} rows for ${backlog.receipted} receipted of ${backlog.frames}`, met: backlog.exactlyOnce },
        ],
        notes: dataplaneNotes({ telemetry, plain, open, backlog, full, queueBytes, quick: ctx.quick }),
      };
    } finally {
      await Promise.all(gens.map((g) => g.kill()));
      await replica.close();
    }
  },
};
