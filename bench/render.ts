/**
 * Re-render docs/performance.md from bench/results/latest.json without re-running the bench
 * (after a change to the template's prose): `node --import tsx bench/render.ts`. The figures stay
 * those of the run that wrote latest.json.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { renderPerformanceDoc, type BenchReport } from './report.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const report = JSON.parse(await readFile(`${root}bench/results/latest.json`, 'utf8')) as BenchReport;
if (report.settings.quick || report.settings.only !== null) throw new Error('bench/results/latest.json is not from a full run');
await writeFile(`${root}docs/performance.md`, await renderPerformanceDoc(report, `${root}bench/performance.md.tmpl`));
console.log(`docs/performance.md rendered from the run of ${report.at}`);
