/**
 * The VAR loader: every file a user may hold, through the one format check of io/weights.ts —
 * the official PyTorch `.pth` (plain state dict or the trainer checkpoint `{'trainer': {'var_wo_ddp': ...}}`),
 * official-layout `.safetensors`, and actvar's own `.safetensors` (written by `actvar train-var`), whose metadata
 * carries `format: actvar-var/1` and the architecture as `config`. Without that metadata the architecture is
 * inferred from the tensors (`inferVarConfig`); explicit overrides win. Missing, unexpected or mis-shaped keys → ONE
 * error listing all of them; a NaN/Inf weight → NonFiniteWeightsError naming the tensor. The buffers `lvl_1L`,
 * `attn_bias_for_masking` and `zero_k_bias` are optional; when present they are checked against the values the
 * patch numbers imply (docs/VAR.md §8). The returned model's file metadata: `loadedFrom(model)` (io/weights.ts).
 */
import { Tensor } from '../tensor/index.js';
import { definedOnly, readWeights, recordLoaded } from '../io/weights.js';
import { inferVarConfig, tokenLayout, type VarConfig } from './config.js';
import { VAR, varParamShapes, varBufferShapes } from './var.js';
import { toBf16Params, type WeightsDtype } from './weights-dtype.js';

export { detectWeightFormat, loadedFrom, type WeightFormat } from '../io/weights.js';

/** The `format` tag actvar writes into a VAR's safetensors metadata (with `config`: the VarConfig as JSON). */
export const VAR_FORMAT = 'actvar-var/1';

/** A weight file that does not fit a VAR (missing / unexpected / mis-shaped keys, bad buffers). */
export class VarWeightsError extends Error {
  constructor(message: string, readonly problems: string[] = []) { super(message); }
  override get name(): string { return 'VarWeightsError'; }
}

/** The attention mask holds −∞ by design; every other tensor must be finite. */
const NON_FINITE_BUFFERS: ReadonlySet<string> = new Set(['attn_bias_for_masking']);

/** Read the VAR state dict of a file or its bytes (for .pth: `trainer.var_wo_ddp` when present, else the top-level dict). */
export function readVarStateDict(src: string | Uint8Array): Map<string, Tensor> {
  return readWeights(src, 'var', NON_FINITE_BUFFERS).tensors;
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

/**
 * Load a VAR from a path or the file's bytes: official .pth / .safetensors (architecture inferred) or actvar's own
 * file (architecture from its metadata). `overrides` win over both.
 */
export function loadVar(src: string | Uint8Array, overrides: Partial<VarConfig> = {}, opts: LoadVarOptions = {}): VAR {
  const file = readWeights(src, 'var', NON_FINITE_BUFFERS);
  const own = file.metadata.format === VAR_FORMAT && file.metadata.config ? JSON.parse(file.metadata.config) as Partial<VarConfig> : {};
  let model = varFromStateDict(file.tensors, { ...own, ...definedOnly(overrides) }, file.source);
  if (opts.weightsDtype === 'bf16') model = toBf16Weights(model);
  return recordLoaded(model, file);
}

export interface LoadVarOptions {
  /** 'bf16': store the weight matrices as bf16 (inference only; src/var/weights-dtype.ts); default 'fp32'. */
  weightsDtype?: WeightsDtype;
}

/**
 * The model with its weight matrices as bf16 (src/var/weights-dtype.ts says which; the arithmetic is
 * src/tensor/ops/bf16.ts): half their memory, inference only (no gradients, no saving). A new VAR; the
 * float32 one is left as it was.
 */
export function toBf16Weights(model: VAR): VAR {
  return new VAR(model.config, toBf16Params(model.params));
}
