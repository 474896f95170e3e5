/**
 * Loading VAR weights: .safetensors (official key names) or the official PyTorch .pth (plain state
 * dict or the trainer checkpoint `{'trainer': {'var_wo_ddp': ...}}`), told apart by magic bytes
 * (zip `PK\x03\x04` → .pth), then by extension. The architecture is inferred from the tensors
 * (`inferVarConfig`); explicit overrides win. Missing, unexpected or mis-shaped keys → ONE error
 * listing all of them. The buffers `lvl_1L`, `attn_bias_for_masking` and `zero_k_bias` are optional;
 * when present they are checked against the values the patch numbers imply (docs/VAR.md §8).
 */
import * as fs from 'node:fs';
import { Tensor } from '../tensor/index.js';
import { readSafetensors } from '../io/safetensors.js';
import { readPthObject, extractStateDict } from '../io/pth.js';
import { inferVarConfig, tokenLayout, type VarConfig } from './config.js';
import { VAR, varParamShapes, varBufferShapes } from './var.js';

/** A weight file that does not fit a VAR (missing / unexpected / mis-shaped keys, bad buffers). */
export class VarWeightsError extends Error {
  constructor(message: string, readonly problems: string[] = []) { super(message); }
  override get name(): string { return 'VarWeightsError'; }
}

export type WeightFormat = 'safetensors' | 'pth';

/** Zip magic → PyTorch .pth; a plausible safetensors header → safetensors; else by extension. */
export function detectWeightFormat(path: string): WeightFormat {
  let head = Buffer.alloc(0);
  const fd = fs.openSync(path, 'r');
  try {
    head = Buffer.alloc(9);
    const n = fs.readSync(fd, head, 0, 9, 0);
    head = head.subarray(0, n);
  } finally { fs.closeSync(fd); }
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return 'pth';
  if (head.length >= 9 && head[8] === 0x7b /* '{' */) return 'safetensors';
  if (/\.(pth|pt|ckpt|bin)$/i.test(path)) return 'pth';
  return 'safetensors';
}

/** Read the VAR state dict of a file (for .pth: `trainer.var_wo_ddp` when present, else the top-level dict). */
export function readVarStateDict(path: string): Map<string, Tensor> {
  if (detectWeightFormat(path) === 'pth') return extractStateDict(readPthObject(path), 'var');
  return readSafetensors(path);
}

/**
 * Check a state dict against a config: every parameter present with its shape and float32,
 * no unknown keys, buffers (if present) equal to the recomputed ones. Throws one VarWeightsError
 * listing every problem.
 */
export function checkVarStateDict(sd: Map<string, Tensor>, cfg: VarConfig, source = 'VAR state dict'): void {
  const params = varParamShapes(cfg), buffers = varBufferShapes(cfg);
  const missing: string[] = [], unexpected: string[] = [], misshaped: string[] = [], bad: string[] = [];
  for (const [k, s] of params) {
    const t = sd.get(k);
    if (!t) missing.push(k);
    else if (t.shape.join() !== s.join()) misshaped.push(`${k}: got [${t.shape.join(', ')}], expected [${s.join(', ')}]`);
    else if (t.dtype !== 'float32') misshaped.push(`${k}: got ${t.dtype}, expected float32`);
  }
  const { lvl, L } = tokenLayout(cfg.patchNums);
  for (const [k, t] of sd) {
    if (params.has(k)) continue;
    const s = buffers.get(k);
    if (!s) { unexpected.push(k); continue; }
    if (t.shape.join() !== s.join()) { misshaped.push(`${k}: got [${t.shape.join(', ')}], expected [${s.join(', ')}]`); continue; }
    const d = t.data;
    if (k === 'lvl_1L') {
      for (let i = 0; i < L; i++) if (d[i] !== lvl[i]) { bad.push(`lvl_1L[${i}] = ${d[i]}, but patch numbers [${cfg.patchNums.join(', ')}] give ${lvl[i]}`); break; }
    } else if (k === 'attn_bias_for_masking') {
      for (let i = 0; i < L * L; i++) {
        const want = lvl[Math.floor(i / L)] >= lvl[i % L] ? 0 : -Infinity;
        if (d[i] !== want) { bad.push(`attn_bias_for_masking[${Math.floor(i / L)}, ${i % L}] = ${d[i]}, expected ${want} (block-causal mask)`); break; }
      }
    } else {
      for (let i = 0; i < d.length; i++) if (d[i] !== 0) { bad.push(`${k}[${i}] = ${d[i]}: the K bias must be zero`); break; }
    }
  }
  const problems = [
    ...missing.map((k) => `missing: ${k}`), ...unexpected.map((k) => `unexpected: ${k}`),
    ...misshaped.map((k) => `mis-shaped: ${k}`), ...bad.map((k) => `bad buffer: ${k}`),
  ];
  if (problems.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing keys (${missing.length}):\n    ${missing.join('\n    ')}`);
    if (unexpected.length) parts.push(`unexpected keys (${unexpected.length}):\n    ${unexpected.join('\n    ')}`);
    if (misshaped.length) parts.push(`mis-shaped keys (${misshaped.length}):\n    ${misshaped.join('\n    ')}`);
    if (bad.length) parts.push(`inconsistent buffers (${bad.length}):\n    ${bad.join('\n    ')}`);
    throw new VarWeightsError(
      `${source} does not match the inferred VAR architecture (depth ${cfg.depth}, width ${cfg.width}, heads ${cfg.heads}, `
      + `V ${cfg.vocabSize}, Cvae ${cfg.Cvae}, classes ${cfg.numClasses}, patch numbers [${cfg.patchNums.join(', ')}]${cfg.sharedAdaLN ? ', shared AdaLN' : ''}):\n  ${parts.join('\n  ')}`,
      problems,
    );
  }
}

/** Infer the architecture, validate, and build the model (the map's tensors are used, not copied). */
export function varFromStateDict(sd: Map<string, Tensor>, overrides: Partial<VarConfig> = {}, source = 'VAR state dict'): VAR {
  let cfg: VarConfig;
  try {
    cfg = inferVarConfig(sd, overrides);
  } catch (e) {
    throw new VarWeightsError(`${source}: ${(e as Error).message}`);
  }
  checkVarStateDict(sd, cfg, source);
  return new VAR(cfg, sd);
}

/** Load a VAR from a .safetensors or .pth file. */
export function loadVar(path: string, overrides: Partial<VarConfig> = {}): VAR {
  return varFromStateDict(readVarStateDict(path), overrides, path);
}
