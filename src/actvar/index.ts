/** ActVAR (paper §3.2–3.4): expert FFNs, router, gated token selector, sparse execution around a VAR. */
export * from './config.js';
export * from './experts.js';
export * from './router.js';
export * from './selector.js';
export * from './init.js';
export * from './actvar.js';
export * from './flops.js';
export * from './actmaps.js';
export * from './baselines.js';
export * from './hash.js';
export * from './file.js';
export * from './teacher.js';
export * from './distill.js';
