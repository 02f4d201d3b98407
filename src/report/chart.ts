/**
 * A small inline SVG line chart: the report must open offline as one file, and a
 * charting library would mean shipping its script and a DOM at report time.
 */
import escapeHtml from 'escape-html';

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
}

function niceTicks(lo: number, hi: number, count: number, minStep = 0): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(minStep, [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!);
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

export function lineChart(opts: { title: string; xLabel: string; yLabel: string; series: Series[]; yMin?: number; yMax?: number; id: string }): string {
  const W = 560;
  const H = 300;
  const m = { l: 56, r: 16, t: 44, b: 44 };
  const pts = opts.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const xMax = Math.max(1, ...pts.map(([x]) => x));
  const xMin = Math.min(0, ...pts.map(([x]) => x));
  let yMin = opts.yMin ?? Math.min(...pts.map(([, y]) => y));
  let yMax = opts.yMax ?? Math.max(...pts.map(([, y]) => y));
  if (!Number.isFinite(yMin) || !Number.isFinite(yMax)) [yMin, yMax] = [0, 1];
  if (yMax === yMin) yMax = yMin + 1;
  // Headroom, so a flat curve at the maximum does not sit on the frame.
  if (opts.yMax === undefined) yMax += (yMax - yMin) * 0.05;
  const sx = (x: number) => m.l + ((x - xMin) / (xMax - xMin)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - yMin) / (yMax - yMin)) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg id="${opts.id}" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(opts.title)}">`);
  parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" class="title">${escapeHtml(opts.title)}</text>`);
  for (const t of niceTicks(yMin, yMax, 5)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${m.l - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" class="tick">${t}</text>`);
  }
  for (const t of niceTicks(xMin, xMax, 6, 1)) {
    parts.push(`<text x="${sx(t).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle" class="tick">${t}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" class="axis"/>`);
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" class="axis"/>`);
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 8}" text-anchor="middle" class="label">${escapeHtml(opts.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle" class="label">${escapeHtml(opts.yLabel)}</text>`);
  opts.series.forEach((s, k) => {
    const p = s.points.filter(([, y]) => Number.isFinite(y));
    if (p.length > 0) {
      const d = p.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
      parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2" class="series" data-series="${escapeHtml(s.name)}"/>`);
      if (p.length === 1) parts.push(`<circle cx="${sx(p[0]![0]).toFixed(1)}" cy="${sy(p[0]![1]).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    const lx = m.l + k * 120;
    parts.push(`<rect x="${lx}" y="${m.t - 14}" width="14" height="4" fill="${s.color}"/>`);
    parts.push(`<text x="${lx + 18}" y="${m.t - 8}" class="legend">${escapeHtml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
