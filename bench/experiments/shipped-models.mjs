// The shipped Fashion-MNIST VAR and tokenizer on the Node backend, and an ActVAR of its defaults
// (75,75;75) calibrated training-free, for the experiments that time them (built dist/ needed).
import { Rng } from '../../dist/src/tensor/index.js';
import { loadVar } from '../../dist/src/var/load.js';
import { loadVqvae } from '../../dist/src/vqvae/load.js';
import { ActVAR } from '../../dist/src/actvar/actvar.js';
import { useNodeBackend } from '../../dist/src/backend/node.js';

export const modelsDir = new URL('../../models/', import.meta.url).pathname;

export function shippedModels() {
  useNodeBackend();
  return { model: loadVar(modelsDir + 'var-fashion-mnist.safetensors'), vqvae: loadVqvae(modelsDir + 'tokenizer-fashion-mnist.safetensors') };
}

/** ActVAR.wrap(model) with training-free gates calibrated on dense generations of `labels` (CFG 1.5, seed 0x5eed). */
export function calibratedActVar(model, vqvae, labels) {
  const a = ActVAR.wrap(model, {});
  a.calibrate({ vqvae, labels, cfg: 1.5, topK: 0, topP: 0, rng: new Rng(0x5eed) });
  return a;
}
