/**
 * Memory and reconnect storms on the shipped unit's limits and the shipped config (only the rate
 * limits lifted, and the documented storm capacity set: SHIPPED_LIFTED says which): RSS with many
 * authenticated connections held, and storms of peripherals connecting at the same instant.
 */
import { SHIPPED_LIFTED, shippedNofile } from '../harness.js';
import type { Phase } from '../phase.js';
import { closePools, storm, stormRuns } from '../scenarios.js';
import { fmt, round } from '../stats.js';
import { sizes } from './sizes.js';

export const holdPhase: Phase = {
  key: 'hold',
  title: 'Memory with many authenticated connections (shipped limits)',
  async run(ctx) {
    const { hold } = sizes(ctx);
    const gw = await ctx.startGateway('hold', { profile: 'shipped' });
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const idle = round(gw.memory().rssMb);
      const held = await storm(ctx.gens, ctx.env, gw, ctx.env.devices.slice(0, hold), true);
      await new Promise((r) => setTimeout(r, 1000));
      const heldRss = round(gw.memory().rssMb);
      await closePools(ctx.gens);
      ctx.log(`      idle RSS ${idle} MB; ${held.report.ok} held: RSS ${heldRss} MB`);
      return {
        summary: { idleRssMb: idle, held: held.report.ok, heldRssMb: heldRss, failures: held.report.failures, retries: held.retries },
        rows: [
          ['daemon RSS idle, shipped limits (MB)', `${idle}`],
          [`daemon RSS with ${held.report.ok} authenticated connections (MB)`, `${heldRss}`],
          [`KB per authenticated connection`, `${Math.round(((heldRss - idle) * 1024) / Math.max(1, held.report.ok))}`],
        ],
        targets: [{ target: `${hold} authenticated connections <= ${hold >= 5000 ? 200 : 120} MB`, value: `${heldRss} MB (${held.report.ok} held)`, met: held.report.ok === hold && heldRss <= (hold >= 5000 ? 200 : 120) }],
      };
    } finally {
      await gw.stop();
    }
  },
};

export const stormPhase: Phase = {
  key: 'storm',
  title: 'Reconnect storm (shipped limits)',
  async run(ctx) {
    const size = Number(process.env.BENCH_STORM ?? (ctx.quick ? 1000 : 10_000));
    const nofile = shippedNofile();
    ctx.log(`      shipped unit's LimitNOFILE ${nofile}; config: ${SHIPPED_LIFTED}`);
    const s = await stormRuns(ctx.gens, ctx.env, { runs: ctx.runs, size, startDaemon: (n) => ctx.startGateway(n, { profile: 'shipped' }) });
    ctx.log(`      all welcomed in ${fmt(s.allWelcomedSec, ' s')}, welcomed ${s.welcomed.join('/')}, peak RSS ${fmt(s.peakRssMb, ' MB')}, retried attempts ${s.retries} ${JSON.stringify(s.retried)}`);
    const failures = Object.keys(s.failures).length === 0 ? 'none' : JSON.stringify(s.failures);
    return {
      summary: { ...s, limits: { nofile, config: SHIPPED_LIFTED } },
      rows: [
        [`**storm** of ${size} at once: time until all welcomed (s)`, fmt(s.allWelcomedSec)],
        ['storm: welcomed per run / never welcomed', `${s.welcomed.join(' / ')} / ${failures}`],
        [`storm: retried attempts over ${ctx.runs} runs (CONNACK 3 over capacity, connect failures, busy)`, `${s.retries} ${JSON.stringify(s.retried)}`],
        ['storm: daemon peak RSS (VmHWM, MB)', fmt(s.peakRssMb)],
        [`TPM signatures: during the storm / including the start`, `${JSON.stringify(s.tpmSignaturesDuringStorm)} / ${JSON.stringify(s.tpmSignaturesTotal)}`],
      ],
      targets: [
        { target: `storm of ${size}: all welcomed <= 15 s`, value: `${s.allWelcomedSec.median} s (max ${s.allWelcomedSec.max})`, met: s.allWelcomedSec.max <= 15 && s.welcomed.every((w) => w === size) },
        { target: 'storm: 0 failures', value: failures, met: Object.keys(s.failures).length === 0 },
        { target: 'storm: daemon peak RSS <= 250 MB', value: `${s.peakRssMb.median} MB (max ${s.peakRssMb.max})`, met: s.peakRssMb.max <= 250 },
        { target: `<= 1 TPM signature per ${size} auths`, value: `${Math.max(...s.tpmSignaturesTotal)} (incl. start)`, met: Math.max(...s.tpmSignaturesTotal) <= 1 },
      ],
    };
  },
};
