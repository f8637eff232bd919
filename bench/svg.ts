/**
 * The latency chart, hand-written SVG: p50/p95/p99 against offered load, one polyline each,
 * with the p99 target as a dashed line. The latency axis is logarithmic: tens of milliseconds
 * below saturation and seconds above it both stay readable. No chart library.
 */
export interface LatencyPoint {
  rate: number;
  p50: number;
  p95: number;
  p99: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function latencySvg(points: readonly LatencyPoint[], o: { title: string; targetMs?: number; note?: string }): string {
  const W = 720;
  const H = 420;
  const m = { l: 64, r: 120, t: 48, b: 64 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const xmax = niceCeil(Math.max(1, ...points.map((p) => p.rate)));
  const top = Math.max(o.targetMs ?? 0, ...points.map((p) => p.p99).filter(Number.isFinite), 10);
  const decades = Math.max(1, Math.ceil(Math.log10(top)));
  const ymax = 10 ** decades;
  const x = (v: number): number => m.l + (v / xmax) * pw;
  // log10 from 1 ms to ymax.
  const y = (v: number): number => m.t + ph - (Math.log10(Math.min(Math.max(v, 1), ymax)) / decades) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(o.title)}</text>`);
  for (let d = 0; d <= decades; d += 1) {
    const vy = 10 ** d;
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y(vy)}" y2="${y(vy)}" stroke="#ddd"/>`);
    out.push(`<text x="${m.l - 6}" y="${y(vy) + 4}" text-anchor="end">${fmtTick(vy)}</text>`);
  }
  for (let i = 0; i <= 5; i += 1) {
    const vx = (xmax * i) / 5;
    out.push(`<line x1="${x(vx)}" x2="${x(vx)}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x(vx)}" y="${m.t + ph + 18}" text-anchor="middle">${fmtTick(vx)}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.l + pw / 2}" y="${H - 24}" text-anchor="middle">offered load (full authentications/s, open loop)</text>`);
  out.push(`<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>`);
  if (o.targetMs !== undefined) {
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y(o.targetMs)}" y2="${y(o.targetMs)}" stroke="#c00" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${m.l + pw + 6}" y="${y(o.targetMs) + 4}" fill="#c00">p99 target</text>`);
  }
  const series: [keyof LatencyPoint, string][] = [['p50', '#1f77b4'], ['p95', '#ff7f0e'], ['p99', '#2ca02c']];
  series.forEach(([k, color], i) => {
    const pts = points.filter((p) => Number.isFinite(p[k])).map((p) => `${x(p.rate).toFixed(1)},${y(p[k]).toFixed(1)}`);
    out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of points) if (Number.isFinite(p[k])) out.push(`<circle cx="${x(p.rate).toFixed(1)}" cy="${y(p[k]).toFixed(1)}" r="3" fill="${color}"/>`);
    out.push(`<line x1="${m.l + pw + 10}" x2="${m.l + pw + 30}" y1="${m.t + 14 + i * 18}" y2="${m.t + 14 + i * 18}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${m.l + pw + 36}" y="${m.t + 18 + i * 18}">${k}</text>`);
  });
  if (o.note !== undefined) out.push(`<text x="${m.l}" y="${H - 6}" font-size="10" fill="#555">${esc(o.note)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const k of [1, 2, 2.5, 5, 10]) if (k * p >= v) return k * p;
  return 10 * p;
}

function fmtTick(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}
