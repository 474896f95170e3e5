/** The multi-scale VQVAE: encoder/decoder, residual multi-scale quantiser, config inference, loading. */
export * from './basic-vae.js';
export * from './quant.js';
export * from './config.js';
export * from './vqvae.js';
export * from './load.js';
