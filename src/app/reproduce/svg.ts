/**
 * Small, dependency-free SVG charts for the reproduction page: a scatter/line plot with error bars,
 * labelled points, "nice" axis ticks and a legend. Output is a standalone `<svg>` element (valid XML,
 * every text escaped) that a browser renders inline in HTML without scripts.
 */

export type Marker = 'circle' | 'square' | 'triangle' | 'diamond' | 'cross';

export interface Point { x: number; y: number; xerr?: number; yerr?: number; label?: string }

export interface Series {
  name: string;
  points: Point[];
  color: string;
  marker?: Marker;
  /** Join the points (in the given order) with a line. */
  line?: boolean;
  dashed?: boolean;
}

export interface PlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  width?: number;
  height?: number;
  xTickFormat?: (v: number) => string;
  yTickFormat?: (v: number) => string;
  /** Explicit x ticks (e.g. 4, 8, 16, 32). */
  xTicks?: number[];
  /** Log2 x axis. */
  xLog2?: boolean;
}

/** XML text escaping (&, <, >, ", '). */
export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** About `count` round tick values covering [lo, hi] (steps 1, 2, 5 × 10^k). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi === lo) { const d = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1; lo -= d; hi += d; }
  const raw = (hi - lo) / Math.max(1, count), mag = 10 ** Math.floor(Math.log10(raw)), f = raw / mag;
  const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  return out;
}

const n2 = (v: number): string => (Math.round(v * 100) / 100).toString();

function markerPath(m: Marker, x: number, y: number, r: number, color: string): string {
  const c = `fill="${color}" stroke="#222" stroke-width="0.8"`;
  switch (m) {
    case 'square': return `<rect x="${n2(x - r)}" y="${n2(y - r)}" width="${n2(2 * r)}" height="${n2(2 * r)}" ${c}/>`;
    case 'triangle': return `<path d="M${n2(x)} ${n2(y - r * 1.2)}L${n2(x + r * 1.1)} ${n2(y + r * 0.8)}L${n2(x - r * 1.1)} ${n2(y + r * 0.8)}Z" ${c}/>`;
    case 'diamond': return `<path d="M${n2(x)} ${n2(y - r * 1.3)}L${n2(x + r * 1.3)} ${n2(y)}L${n2(x)} ${n2(y + r * 1.3)}L${n2(x - r * 1.3)} ${n2(y)}Z" ${c}/>`;
    case 'cross': return `<path d="M${n2(x - r)} ${n2(y - r)}L${n2(x + r)} ${n2(y + r)}M${n2(x + r)} ${n2(y - r)}L${n2(x - r)} ${n2(y + r)}" stroke="${color}" stroke-width="2.2" fill="none"/>`;
    default: return `<circle cx="${n2(x)}" cy="${n2(y)}" r="${n2(r)}" ${c}/>`;
  }
}

/** A scatter / line plot as an `<svg>` string. Non-finite points are skipped. */
export function plotSvg(o: PlotOptions): string {
  const W = o.width ?? 640, H = o.height ?? 400;
  const legendW = 190, m = { l: 64, r: legendW + 16, t: 34, b: 50 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const tx = (v: number): number => (o.xLog2 ? Math.log2(v) : v);
  const pts = o.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!o.xLog2 || p.x > 0));
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const p of pts) {
    const xe = p.xerr && Number.isFinite(p.xerr) ? p.xerr : 0, ye = p.yerr && Number.isFinite(p.yerr) ? p.yerr : 0;
    x0 = Math.min(x0, tx(p.x - (o.xLog2 ? 0 : xe))); x1 = Math.max(x1, tx(p.x + (o.xLog2 ? 0 : xe)));
    y0 = Math.min(y0, p.y - ye); y1 = Math.max(y1, p.y + ye);
  }
  if (!pts.length) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
  const padX = (x1 - x0 || 1) * 0.08, padY = (y1 - y0 || Math.abs(y0) || 1) * 0.1;
  x0 -= padX; x1 += padX; y0 -= padY; y1 += padY;
  const X = (v: number): number => m.l + ((tx(v) - x0) / (x1 - x0)) * pw;
  const Y = (v: number): number => m.t + (1 - (v - y0) / (y1 - y0)) * ph;
  const xf = o.xTickFormat ?? ((v: number) => String(v)), yf = o.yTickFormat ?? ((v: number) => String(v));
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.title)}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="${m.l}" y="20" font-size="14" font-weight="bold">${esc(o.title)}</text>`);
  // grid and ticks
  const xt = o.xTicks ?? (o.xLog2 ? [] : niceTicks(x0, x1, 6));
  for (const v of xt) {
    if (tx(v) < x0 || tx(v) > x1) continue;
    const x = X(v);
    parts.push(`<line x1="${n2(x)}" y1="${m.t}" x2="${n2(x)}" y2="${m.t + ph}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${n2(x)}" y="${m.t + ph + 16}" text-anchor="middle">${esc(xf(v))}</text>`);
  }
  for (const v of niceTicks(y0, y1, 6)) {
    if (v < y0 || v > y1) continue;
    const y = Y(v);
    parts.push(`<line x1="${m.l}" y1="${n2(y)}" x2="${m.l + pw}" y2="${n2(y)}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${m.l - 6}" y="${n2(y + 4)}" text-anchor="end">${esc(yf(v))}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#555"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  // series
  o.series.forEach((s, si) => {
    const ok = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!o.xLog2 || p.x > 0));
    if (s.line && ok.length > 1) {
      parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="5 4"' : ''} points="${ok.map((p) => `${n2(X(p.x))},${n2(Y(p.y))}`).join(' ')}"/>`);
    }
    for (const p of ok) {
      const x = X(p.x), y = Y(p.y);
      if (p.yerr && Number.isFinite(p.yerr) && p.yerr > 0) {
        const a = Y(p.y + p.yerr), b = Y(p.y - p.yerr);
        parts.push(`<path d="M${n2(x)} ${n2(a)}V${n2(b)}M${n2(x - 4)} ${n2(a)}H${n2(x + 4)}M${n2(x - 4)} ${n2(b)}H${n2(x + 4)}" stroke="${s.color}" stroke-width="1.2" fill="none"/>`);
      }
      if (!o.xLog2 && p.xerr && Number.isFinite(p.xerr) && p.xerr > 0) {
        const a = X(p.x - p.xerr), b = X(p.x + p.xerr);
        parts.push(`<path d="M${n2(a)} ${n2(y)}H${n2(b)}M${n2(a)} ${n2(y - 4)}V${n2(y + 4)}M${n2(b)} ${n2(y - 4)}V${n2(y + 4)}" stroke="${s.color}" stroke-width="1.2" fill="none"/>`);
      }
      parts.push(markerPath(s.marker ?? 'circle', x, y, 4.5, s.color));
      if (p.label) parts.push(`<text x="${n2(x + 7)}" y="${n2(y - 6)}" font-size="10" fill="#333">${esc(p.label)}</text>`);
    }
    // legend
    const ly = m.t + 8 + si * 20, lx = W - legendW;
    if (s.line) parts.push(`<line x1="${lx - 8}" y1="${ly}" x2="${lx + 8}" y2="${ly}" stroke="${s.color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
    parts.push(markerPath(s.marker ?? 'circle', lx, ly, 4.5, s.color));
    parts.push(`<text x="${lx + 14}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Indices of the Pareto-optimal points when `x` is to be maximised and `y` minimised (ordered by x). */
export function paretoFront(points: Point[]): number[] {
  const idx = points.map((_, i) => i).filter((i) => Number.isFinite(points[i].x) && Number.isFinite(points[i].y));
  return idx.filter((i) => !idx.some((j) => j !== i && points[j].x >= points[i].x && points[j].y <= points[i].y && (points[j].x > points[i].x || points[j].y < points[i].y)))
    .sort((a, b) => points[a].x - points[b].x);
}
