/**
 * Images out: [B, 3, H, W] float in [0, 1] → 8-bit RGB with the official demo's conversion
 * (`x*255` then `astype(uint8)`, which truncates, docs/VAR.md §4), and grids of images. Plain
 * Uint8Array work (part of the core, actvar/core); PNG files are png.ts.
 */
import type { Tensor } from '../tensor/index.js';

/** An 8-bit RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage { width: number; height: number; data: Uint8Array }

/** v = trunc(fround(x·255)), clamped to [0, 255] (values are in [0, 1] after the official clamp). */
export function toUint8(x: number): number {
  const v = Math.trunc(Math.fround(x * 255));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Split a [B, 3, H, W] (or grey [B, 1, H, W]) batch in [0, 1] into RGB images. */
export function tensorToImages(img: Tensor): RgbImage[] {
  if (img.ndim !== 4 || (img.shape[1] !== 3 && img.shape[1] !== 1)) throw new RangeError(`expected images [B, 3, H, W] or [B, 1, H, W], got [${img.shape.join(', ')}]`);
  const [B, Cn, H, W] = img.shape, d = img.f32, hw = H * W;
  const out: RgbImage[] = [];
  for (let b = 0; b < B; b++) {
    const px = new Uint8Array(hw * 3);
    for (let c = 0; c < 3; c++) {
      const o = (b * Cn + (Cn === 1 ? 0 : c)) * hw;
      for (let i = 0; i < hw; i++) px[i * 3 + c] = toUint8(d[o + i]);
    }
    out.push({ width: W, height: H, data: px });
  }
  return out;
}

/**
 * Tile equally sized images into a grid, `nrow` per row (torchvision make_grid's name), with
 * `padding` pixels of `padValue` between and around them (default: none, as the demo).
 */
export function makeGrid(images: readonly RgbImage[], opts: { nrow?: number; padding?: number; padValue?: number } = {}): RgbImage {
  if (images.length === 0) throw new RangeError('makeGrid: no images');
  const { width: W, height: H } = images[0];
  for (const im of images) if (im.width !== W || im.height !== H) throw new RangeError('makeGrid: images differ in size');
  const nrow = Math.max(1, Math.min(opts.nrow ?? 8, images.length));
  const pad = opts.padding ?? 0, rowsN = Math.ceil(images.length / nrow);
  const GW = nrow * W + (nrow + 1) * pad, GH = rowsN * H + (rowsN + 1) * pad;
  const data = new Uint8Array(GW * GH * 3).fill(opts.padValue ?? 0);
  images.forEach((im, k) => {
    const gx = pad + (k % nrow) * (W + pad), gy = pad + Math.floor(k / nrow) * (H + pad);
    for (let y = 0; y < H; y++) data.set(im.data.subarray(y * W * 3, (y + 1) * W * 3), ((gy + y) * GW + gx) * 3);
  });
  return { width: GW, height: GH, data };
}
