/** The VAR transformer: config and presets, blocks (with the ActVAR hook pieces), model, sampling, init, loading. */
export * from './config.js';
export * from './basic-var.js';
export * from './var.js';
export * from './sample.js';
export * from './init.js';
export * from './load.js';
export * from './weights-dtype.js';
