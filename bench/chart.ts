/**
 * Redraw bench/results/latency.svg from bench/results/latest.json without re-running the bench:
 * `node --import tsx bench/chart.ts`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { latencySvg } from './svg.js';

const results = new URL('./results/', import.meta.url);
const d = JSON.parse(await readFile(new URL('latest.json', results), 'utf8')) as {
  at: string;
  machine: { cores: number; loadAtStart: number[] };
  settings: { runs: number };
  openLoop: { rate: number; p50: { median: number }; p95: { median: number }; p99: { median: number } }[];
};
const points = d.openLoop.map((p) => ({ rate: p.rate, p50: p.p50.median, p95: p.p95.median, p99: p.p99.median }));
await writeFile(
  new URL('latency.svg', results),
  latencySvg(points, { title: 'Gatehouse: full MQTT authentication latency vs offered load', targetMs: 50, note: `${d.at}, ${d.machine.cores} cores, load ${d.machine.loadAtStart[0]?.toFixed(1) ?? '?'}; medians of ${d.settings.runs} runs` }),
);
