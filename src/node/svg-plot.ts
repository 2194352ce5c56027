/**
 * A small SVG line chart for the figures the CLI writes (toy-paper's Figures 4 and 6): lines with an optional
 * ±sd band, axes with round ticks, a legend. Plain SVG 1.1, so the files open in any browser and in GitHub's
 * Markdown preview.
 */

export interface Series {
  name: string;
  /** [x, y] points; non-finite y are gaps */
  points: Array<[number, number]>;
  /** the half-width of a band around the line at each point (e.g. the sd over seeds) */
  band?: number[];
  color: string;
  dashed?: boolean;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** fixed y range (default: the data's, padded) */
  yRange?: [number, number];
  width?: number;
  height?: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** about n round tick values covering [lo, hi] */
export function ticks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n,
    mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function lineChart(c: ChartSpec): string {
  const W = c.width ?? 640,
    H = c.height ?? 360,
    m = { l: 64, r: 16, t: 36, b: 48 + 18 * Math.ceil(c.series.length / 2) };
  const pw = W - m.l - m.r,
    ph = H - m.t - m.b;
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = c.series.flatMap((s) =>
    s.points.flatMap((p, i) => (Number.isFinite(p[1]) ? [p[1] - (s.band?.[i] ?? 0), p[1] + (s.band?.[i] ?? 0)] : [])),
  );
  const x0 = Math.min(...xs),
    x1 = Math.max(...xs);
  let [y0, y1] = c.yRange ?? [Math.min(...ys), Math.max(...ys)];
  if (!c.yRange) {
    const pad = (y1 - y0 || Math.abs(y1) || 1) * 0.05;
    [y0, y1] = [y0 - pad, y1 + pad];
  }
  const X = (x: number) => m.l + (x1 > x0 ? ((x - x0) / (x1 - x0)) * pw : pw / 2);
  const Y = (y: number) => m.t + ph - ((y - y0) / (y1 - y0 || 1)) * ph;
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(c.title)}</text>`,
  ];
  for (const t of ticks(y0, y1))
    out.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${f(Y(t))}" y2="${f(Y(t))}" stroke="#e5e7eb"/>`,
      `<text x="${m.l - 6}" y="${f(Y(t) + 4)}" text-anchor="end">${t}</text>`,
    );
  for (const t of ticks(x0, x1)) out.push(`<text x="${f(X(t))}" y="${m.t + ph + 16}" text-anchor="middle">${t}</text>`);
  out.push(
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#9ca3af"/>`,
    `<text x="${m.l + pw / 2}" y="${m.t + ph + 34}" text-anchor="middle">${esc(c.xLabel)}</text>`,
    `<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`,
  );
  for (const s of c.series) {
    const pts = s.points.map((p, i) => ({ x: p[0], y: p[1], b: s.band?.[i] ?? 0 })).filter((p) => Number.isFinite(p.y));
    if (s.band && pts.length > 1) {
      const upper = pts.map((p) => `${f(X(p.x))},${f(Y(p.y + p.b))}`),
        lower = pts.map((p) => `${f(X(p.x))},${f(Y(p.y - p.b))}`).reverse();
      out.push(`<polygon points="${[...upper, ...lower].join(' ')}" fill="${s.color}" fill-opacity="0.15" stroke="none"/>`);
    }
    out.push(
      `<polyline points="${pts.map((p) => `${f(X(p.x))},${f(Y(p.y))}`).join(' ')}" fill="none" stroke="${s.color}" ` +
        `stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
  }
  c.series.forEach((s, i) => {
    const lx = m.l + (i % 2) * (pw / 2),
      ly = m.t + ph + 52 + 18 * Math.floor(i / 2);
    out.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${lx + 30}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
