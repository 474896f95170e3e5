/**
 * The ActVAR model file (`actvar-model/1`): one self-describing safetensors file holding everything that
 * generation with a distilled ActVAR needs besides the tokenizer (`actvar distill` writes it, src/train/distill.ts):
 *
 *   tensors   `var.<name>`            the (fine-tuned) VAR's parameters under their official names
 *             `actvar.blocks.{i}.…`   router / selector weights (and expert permutations), as in a gates file
 *   metadata  format                  'actvar-model/1'
 *             var.config              the VarConfig (JSON)
 *             actvar.config           the ActVarConfig (JSON)
 *             actvar.gates            'distilled' (or where the gates come from, GateState)
 *             base_var_sha256         SHA-256 of the parameters of the VAR it was distilled from (hash.ts)
 *             var_sha256              SHA-256 of the parameters stored here (checked on load)
 *             tokenizer_sha256        SHA-256 of the tokenizer file its training data came from (when known)
 *             tokenizer               the tokenizer path given to training (a hint; `--vae` overrides it)
 *             dataset, command, stages, validation (JSON), …   how it was made (free-form strings)
 *
 * The VAR is stored whole (not as a difference to the base) so that the file stands alone. On bytes: model code,
 * no file system (a path works too under Node, through io/node-fs.ts). Writing a file is the caller's (io edge).
 */
import { Tensor } from '../tensor/index.js';
import { encodeSafetensors, readSafetensorsFile } from '../io/safetensors.js';
import { recordLoaded, loadedFrom } from '../io/weights.js';
import { varFromStateDict } from '../var/load.js';
import type { VarConfig } from '../var/config.js';
import { ActVAR, GATES_META, type GateState } from './actvar.js';
import { ActVarConfigError, configFromMetadata, configToMetadata, type ActVarConfig } from './config.js';
import { varParamsHash } from './hash.js';

export const ACTVAR_MODEL_FORMAT = 'actvar-model/1';

const VAR_PREFIX = 'var.';

/** How a model file was made (all optional but the base VAR's hash). */
export interface ActVarModelInfo {
  /** SHA-256 of the base VAR's parameters (varParamsHash of the teacher). */
  baseVarSha256: string;
  tokenizer?: string;
  tokenizerSha256?: string;
  dataset?: string;
  /** The command line that made it. */
  command?: string;
  /** Anything else (validation numbers, steps, stages), stored as strings (objects as JSON). */
  extra?: Record<string, string | number | object>;
}

/** The bytes of an ActVAR model file for `a` (its VAR and gates as they are now). */
export function encodeActVarModel(a: ActVAR, info: ActVarModelInfo): Uint8Array {
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of a.model.params) tensors.set(VAR_PREFIX + k, t);
  for (const [k, t] of a.parameters()) tensors.set(k, t);
  const meta: Record<string, string> = {
    format: ACTVAR_MODEL_FORMAT,
    'var.config': JSON.stringify(a.model.config),
    ...configToMetadata(a.config),
    [GATES_META.gates]: a.gates,
    [GATES_META.baseVar]: info.baseVarSha256,
    var_sha256: varParamsHash(a.model),
  };
  if (info.tokenizer !== undefined) meta.tokenizer = info.tokenizer;
  if (info.tokenizerSha256 !== undefined) meta.tokenizer_sha256 = info.tokenizerSha256;
  if (info.dataset !== undefined) meta.dataset = info.dataset;
  if (info.command !== undefined) meta.command = info.command;
  for (const [k, v] of Object.entries(info.extra ?? {})) meta[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return encodeSafetensors(tensors, meta);
}

/** Whether safetensors metadata is an ActVAR model file's. */
export function isActVarModel(metadata: Record<string, string> | null | undefined): boolean {
  return metadata?.format === ACTVAR_MODEL_FORMAT;
}

/**
 * Load an ActVAR model file (path or bytes): its VAR (built from the stored config and weights, checked against
 * the stored hash) wrapped with its gates, ready to generate. `overrides` change the activation rates / scales
 * (the number of experts is fixed by the stored router). `loadedFrom(result)` gives the file's metadata.
 */
export function loadActVar(src: string | Uint8Array, overrides: Partial<ActVarConfig> = {}): ActVAR {
  const where = typeof src === 'string' ? src : 'the ActVAR model';
  const { tensors, metadata } = readSafetensorsFile(src);
  if (!isActVarModel(metadata)) {
    const f = metadata?.format;
    throw new ActVarConfigError(`${where} is not an ActVAR model file (metadata format ${f ? `"${f}"` : 'missing'}, expected "${ACTVAR_MODEL_FORMAT}"): ` +
      (f === 'actvar-var/1' ? 'it is a plain VAR; use --var' : tensors.has('actvar.blocks.0.router.weight') ? 'it holds gates only; load it with ActVAR.load(model, file) / --actvar-weights' : 'make one with `actvar distill`'));
  }
  const meta = metadata!;
  let varConfig: VarConfig;
  try { varConfig = JSON.parse(meta['var.config']) as VarConfig; } catch {
    throw new ActVarConfigError(`${where}: unreadable 'var.config' metadata`);
  }
  const sd = new Map<string, Tensor>(), gates = new Map<string, Tensor>();
  for (const [k, t] of tensors) {
    if (k.startsWith(VAR_PREFIX)) sd.set(k.slice(VAR_PREFIX.length), t);
    else gates.set(k, t);
  }
  const model = varFromStateDict(sd, varConfig, `${where} (VAR part)`);
  const stored = meta.var_sha256;
  if (stored && varParamsHash(model) !== stored) {
    throw new ActVarConfigError(`${where} is damaged: its VAR weights do not match the SHA-256 recorded in the file`);
  }
  const N = gates.get('actvar.blocks.0.router.weight')?.shape[0];
  if (N === undefined) throw new ActVarConfigError(`${where} holds no 'actvar.blocks.0.router.weight'`);
  if (overrides.experts !== undefined && overrides.experts !== N) {
    throw new ActVarConfigError(`${where} was distilled with ${N} experts, but ${overrides.experts} were asked for (leave --experts out)`);
  }
  const perms = model.blocks.map((_, i) => {
    const p = gates.get(`actvar.blocks.${i}.experts.perm`);
    return p ? Int32Array.from(p.i32) : null;
  });
  const cfg = { ...(configFromMetadata(meta) ?? {}), ...definedOnly(overrides), experts: N };
  const a = ActVAR.wrap(model, cfg, { perms, init: 'zeros' });
  a.setParameters(gates, where);
  const g = meta[GATES_META.gates] as GateState | undefined;
  if (g === 'calibrated' || g === 'distilled') a.gates = g;
  recordLoaded(model, { tensors: sd, metadata: meta, format: 'safetensors', source: typeof src === 'string' ? src : 'bytes' });
  return recordLoaded(a, { tensors, metadata: meta, format: 'safetensors', source: typeof src === 'string' ? src : 'bytes' });
}

/** The metadata of a loaded ActVAR model (undefined for one built in memory). */
export function actVarModelInfo(a: ActVAR): Readonly<Record<string, string>> | undefined {
  return loadedFrom(a)?.metadata;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

