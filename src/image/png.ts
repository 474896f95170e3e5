/**
 * PNG files of RGB images (pngjs, which needs Node's zlib: the Node side of src/image/) written atomically
 * (temp file + rename). The conversion to 8-bit RGB and the grids are image.ts (re-exported here).
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import pngjs from 'pngjs';
import type { RgbImage } from './image.js';

export { toUint8, tensorToImages, makeGrid, type RgbImage } from './image.js';

const { PNG } = pngjs;

/** PNG bytes of an RGB image (8-bit, no alpha). */
export function encodePng(im: RgbImage): Buffer {
  const png = new PNG({ width: im.width, height: im.height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(im.data.buffer, im.data.byteOffset, im.data.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/** Decode a PNG file's bytes into RGB (alpha dropped); for tests and tools. */
export function decodePng(bytes: Uint8Array): RgbImage {
  const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const n = png.width * png.height, data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) { data[i * 3] = png.data[i * 4]; data[i * 3 + 1] = png.data[i * 4 + 1]; data[i * 3 + 2] = png.data[i * 4 + 2]; }
  return { width: png.width, height: png.height, data };
}

/** Write bytes atomically: a temp file in the same directory, then rename over `path`. */
export function writeFileAtomic(path: string, bytes: Uint8Array | string): void {
  const dir = nodePath.dirname(nodePath.resolve(path));
  const tmp = nodePath.join(dir, `.${nodePath.basename(path)}.tmp-${process.pid}-${Date.now()}`);
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, path);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
}

/** Write an RGB image as a PNG file, atomically. */
export function writePng(path: string, im: RgbImage): void {
  writeFileAtomic(path, encodePng(im));
}
