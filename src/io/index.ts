/** Weight-file I/O: safetensors read/write, PyTorch .pth (zip + pickle) reading. */
export * from './errors.js';
export * from './safetensors.js';
export * from './pth.js';
export { type StoredDType, halfToFloat } from './dtype.js';
export { type ReadMode } from './source.js';
export { ZipReader, crc32, type ZipEntry } from './zip.js';
export { unpickle, describe as describePyValue, type UnpicklerHooks, type UnpickleResult } from './pickle.js';
export * from './sha256.js';
