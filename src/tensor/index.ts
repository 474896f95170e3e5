/** The tensor core: knows nothing of VAR. Ops are grouped by family under ops/. */
export * from './tensor.js';
export * from './ops/elementwise.js';
export * from './ops/shape.js';
export * from './ops/reduce.js';
export * from './ops/matmul.js';
export * from './ops/nn.js';
export * from './ops/conv.js';
export * from './ops/resample.js';
export * from './ops/loss.js';
export * from './ops/indexing.js';
export * from './flops.js';
export * from './rng.js';
export * from './ops/gelu.js';
export * from './ops/attention.js';
export * from './ops/adaln.js';
export * from './ops/heads.js';
export * from './ops/kv-attention.js';
export { workspace, Workspace } from '../backend/index.js';
