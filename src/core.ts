/**
 * actvar/core: everything that needs no Node.js — the tensor core, VQVAE, VAR, ActVAR, the optimiser, the classifier
 * and its loader (eval/), the byte codecs (safetensors, zip, pickle, .pth on Uint8Array) and the image conversions.
 * Importing it loads no `node:` module and no FFI (test/core-bundle.test.ts bundles it for the browser): the backend
 * is the TypeScript one unless an edge installs another (`installBackend`), and the loaders take the file's bytes
 * (a path works too under Node, through io/node-fs.ts). The Node library (`actvar`) adds OpenBLAS / native kernels,
 * PNG files, datasets and training.
 */
export * from './backend/index.js';
export * from './tensor/index.js';
export * from './io/errors.js';
export * from './io/safetensors.js';
export * from './io/pth.js';
export * from './io/weights.js';
export { type StoredDType, halfToFloat } from './io/dtype.js';
export { ZipReader, crc32, type ZipEntry } from './io/zip.js';
export { unpickle, describe as describePyValue, type UnpicklerHooks, type UnpickleResult } from './io/pickle.js';
export * from './optim/index.js';
export * from './vqvae/index.js';
export * from './var/index.js';
export * from './actvar/config.js';
export * from './actvar/experts.js';
export * from './actvar/router.js';
export * from './actvar/selector.js';
export * from './actvar/init.js';
export * from './actvar/actvar.js';
export * from './actvar/flops.js';
export * from './actvar/actmaps.js';
export * from './actvar/hash.js';
export * from './actvar/file.js';
export { Sha256, sha256Hex } from './io/sha256.js';
export { loadClassifier, Classifier } from './eval/classifier.js';
export * from './image/image.js';
