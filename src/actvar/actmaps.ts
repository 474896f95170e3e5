/**
 * Activation maps (paper Fig. 5 and Fig. 6) as PNG images.
 *
 * For every image and every activated scale (pn × pn tokens):
 * - `…_scale{si}_tokens.png` (Fig. 6): one tile per block, a token white when that block selected
 *   it and black otherwise, then a last tile with the fraction of blocks that selected each token
 *   (dark blue = never, yellow = every block) — the union coverage paper §4.3.3.
 * - `…_scale{si}_experts.png` (Fig. 5): one tile per block, every selected token coloured by its
 *   most probable expert (N fixed hues), unselected tokens black; then one tile per expert with the
 *   fraction of blocks in which that expert was active for each token.
 * Tiles are laid out in rows of 8 with 2 px gaps; each token is a square of `cell` pixels.
 * Only the conditional rows (the images) are drawn; the CFG unconditional rows select too, but
 * belong to no image.
 */
import type { RgbImage } from '../image/png.js';
import type { ActivationRecord } from './actvar.js';

/** N distinct colours (HSV hues evenly spaced, full saturation and value). */
export function expertPalette(N: number): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let e = 0; e < N; e++) {
    const h = (e / N) * 6, i = Math.floor(h), f = h - i;
    const q = Math.round(255 * (1 - f)), t = Math.round(255 * f);
    const rgb: [number, number, number][] = [[255, t, 0], [q, 255, 0], [0, 255, t], [0, q, 255], [t, 0, 255], [255, 0, q]];
    out.push(rgb[i % 6]);
  }
  return out;
}

/** A dark-blue → teal → yellow ramp for v in [0, 1]. */
export function heat(v: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, v));
  const a: [number, number, number] = [20, 20, 80], b: [number, number, number] = [30, 150, 140], c: [number, number, number] = [250, 230, 40];
  const [p, q, s] = x < 0.5 ? [a, b, x * 2] : [b, c, (x - 0.5) * 2];
  return [0, 1, 2].map((k) => Math.round(p[k] + (q[k] - p[k]) * s)) as [number, number, number];
}

/** Tiles (pn × pn colour arrays) → one image, `perRow` tiles per row, `cell` px per token, 2 px gaps. */
export function tileImage(tiles: Uint8Array[], pn: number, cell: number, perRow = 8): RgbImage {
  const gap = 2, side = pn * cell;
  const cols = Math.min(perRow, tiles.length), rows = Math.ceil(tiles.length / perRow);
  const width = cols * side + (cols - 1) * gap, height = rows * side + (rows - 1) * gap;
  const data = new Uint8Array(width * height * 3).fill(128); // grey gaps
  tiles.forEach((tile, k) => {
    const ox = (k % perRow) * (side + gap), oy = Math.floor(k / perRow) * (side + gap);
    for (let y = 0; y < side; y++) {
      const ty = Math.floor(y / cell);
      for (let x = 0; x < side; x++) {
        const t = ty * pn + Math.floor(x / cell), o = ((oy + y) * width + ox + x) * 3;
        data[o] = tile[t * 3]; data[o + 1] = tile[t * 3 + 1]; data[o + 2] = tile[t * 3 + 2];
      }
    }
  });
  return { width, height, data };
}

/** Collects `ActivationRecord`s of one batch and renders the maps of each image in it. */
export class ActivationMaps {
  private records: ActivationRecord[] = [];
  constructor(readonly numExperts: number, readonly cell = 8) {}

  /** Pass as `ActVAR.onActivation`. */
  readonly record = (r: ActivationRecord): void => { this.records.push(r); };

  reset(): void { this.records = []; }

  /**
   * Maps of the image in conditional row `b` of a batch of `B` images (rows = 2B with CFG, B
   * without). Returns file-name suffix → image, e.g. 'scale8_tokens' → PNG.
   */
  render(b: number): Map<string, RgbImage> {
    const out = new Map<string, RgbImage>();
    const byScale = new Map<number, ActivationRecord[]>();
    for (const r of this.records) {
      if (!byScale.has(r.scaleIndex)) byScale.set(r.scaleIndex, []);
      byScale.get(r.scaleIndex)!.push(r);
    }
    const N = this.numExperts, pal = expertPalette(N);
    for (const [si, recs] of [...byScale].sort((p, q) => p[0] - q[0])) {
      recs.sort((p, q) => p.blockIndex - q.blockIndex);
      const pn = recs[0].patchNum, l = pn * pn;
      const cell = Math.max(1, Math.round((this.cell * 16) / pn));
      const tokenTiles: Uint8Array[] = [], expertTiles: Uint8Array[] = [];
      const count = new Float64Array(l), usage = new Float64Array(N * l);
      for (const r of recs) {
        if (b >= r.rows) throw new RangeError(`activation maps: row ${b} is outside the batch of ${r.rows} rows`);
        const tok = new Uint8Array(l * 3), ex = new Uint8Array(l * 3);
        for (let k = 0; k < r.K; k++) {
          const t = r.selected[b * r.K + k];
          tok.fill(255, t * 3, t * 3 + 3);
          count[t]++;
          const slot = (b * r.K + k) * r.Kw;
          const [cr, cg, cb] = pal[r.route[slot]];
          ex[t * 3] = cr; ex[t * 3 + 1] = cg; ex[t * 3 + 2] = cb;
          for (let j = 0; j < r.Kw; j++) usage[r.route[slot + j] * l + t]++;
        }
        tokenTiles.push(tok); expertTiles.push(ex);
      }
      const D = recs.length;
      const cover = new Uint8Array(l * 3);
      for (let t = 0; t < l; t++) cover.set(heat(count[t] / D), t * 3);
      tokenTiles.push(cover);
      for (let e = 0; e < N; e++) {
        const u = new Uint8Array(l * 3);
        for (let t = 0; t < l; t++) u.set(heat(usage[e * l + t] / D), t * 3);
        expertTiles.push(u);
      }
      out.set(`scale${si}_tokens`, tileImage(tokenTiles, pn, cell));
      out.set(`scale${si}_experts`, tileImage(expertTiles, pn, cell));
    }
    return out;
  }
}
