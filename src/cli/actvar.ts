/**
 * ActVAR for `actvar generate`: the --actvar switch with its flags (the shared ones from options.ts),
 * building the ActVAR of the command line, and what a run adds to the outputs (activation maps,
 * --actvar-save).
 *
 * Without --actvar-weights the routers and selectors get the training-free initialisation of
 * src/actvar/init.ts: a least-squares calibration on --actvar-calib dense generations of random
 * classes (default 2), or with --actvar-calib 0 the data-free router and a uniform selector.
 */
import * as nodePath from 'node:path';
import { Command } from 'commander';
import { UserError } from './errors.js';
import { addActVarInitOptions, addActVarSettingsOptions, addActVarBaselineOption, actvarSettings, choice, path } from './options.js';
import { Rng } from '../tensor/index.js';
import type { VAR, VarVqvae, InferResult, VarHooks } from '../var/var.js';
import { ActVAR } from '../actvar/actvar.js';
import { ActivationMaps } from '../actvar/actmaps.js';
import { ActVarConfigError, type ActVarConfig, type ExpertGrouping, type KvPolicy } from '../actvar/config.js';
import { encodeSafetensors } from '../io/safetensors.js';
import { applyBaseline, type BaselineName } from '../actvar/baselines.js';
import { sha256File } from '../io/node-fs.js';
import { loadActVar, actVarModelInfo } from '../actvar/file.js';
import { checkReadable } from './inputs.js';
import { encodePng } from '../image/png.js';

/** The parsed ActVAR flags of `generate` (commander camel-cases them). */
export interface ActVarCliOptions {
  actvar?: boolean;
  tokenRates?: number[];
  expertRate?: number;
  experts?: number;
  scales?: number[];
  kvPolicy?: KvPolicy;
  actvarWeights?: string;
  actvarCalib?: number;
  actvarGrouping?: ExpertGrouping;
  actvarSave?: string;
  actMaps?: string;
  /** An ActVAR model file (`actvar distill`): its own VAR and gates; implies --actvar. */
  actvarModel?: string;
  baseline?: BaselineName;
}

const NEEDS_ACTVAR = ['tokenRates', 'expertRate', 'experts', 'scales', 'kvPolicy', 'actvarWeights', 'actvarGrouping', 'actvarSave', 'actMaps', 'baseline'] as const;

/** Declare the ActVAR flags of `generate`. */
export function addActVarGenerateOptions(cmd: Command): Command {
  cmd.option('--actvar', 'ActVAR: sparse tokens and FFN experts at the activated scales');
  addActVarSettingsOptions(cmd);
  addActVarInitOptions(cmd, 2);
  addActVarBaselineOption(cmd);
  return cmd
    .option('--actvar-grouping <g>', 'hidden units → experts: contiguous or coactivation (needs --actvar-calib > 0)', choice('--actvar-grouping', ['contiguous', 'coactivation'] as const))
    .option('--actvar-save <file>', 'save the router/selector weights used (.safetensors)', path('--actvar-save'))
    .option('--act-maps <dir>', 'write activation maps (selected tokens per block, active experts per token) as PNGs', path('--act-maps'));
}

/** --actvar-model FILE (generate, eval). */
export function addActVarModelOption(cmd: Command): Command {
  return cmd.option('--actvar-model <file>', 'a distilled ActVAR model file from `actvar distill` (its own VAR and gates; implies --actvar, no --var needed)', path('--actvar-model'));
}

/** Checks that need no model: the flags that only make sense with --actvar, and their combinations. */
export function checkActVarFlags(o: ActVarCliOptions): void {
  if (o.actvarModel !== undefined) {
    o.actvar = true;
    const clash = (['actvarWeights', 'actvarGrouping', 'baseline'] as const).find((k) => o[k] !== undefined);
    if (clash === 'baseline') throw new UserError('--baseline does not go with --actvar-model (the model file holds ActVAR\'s distilled gates; `actvar reproduce` distils the baselines themselves)');
    if (clash) throw new UserError(`--${clash.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} does not go with --actvar-model (the model file holds its gates)`);
    if (o.experts !== undefined) throw new UserError('--experts is fixed by the --actvar-model file; leave it out');
  }
  if (!o.actvar) {
    const given = NEEDS_ACTVAR.filter((k) => o[k] !== undefined);
    if (given.length) throw new UserError(`--${given[0].replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} needs --actvar`);
    return;
  }
  if (o.actvarWeights !== undefined && o.actvarGrouping) throw new UserError('--actvar-grouping is stored with --actvar-weights; leave it out');
  if ((o.actvarCalib ?? 2) === 0 && o.actvarGrouping === 'coactivation') {
    throw new UserError('--actvar-grouping coactivation needs calibration data: give --actvar-calib 1 or more');
  }
}

/**
 * Build the ActVAR of the command line for `model`, or null without --actvar: loads --actvar-weights
 * (UserError when unsuitable) or runs the training-free initialisation (calibration needs the VQVAE).
 */
export function buildActVar(
  model: VAR, o: ActVarCliOptions,
  ctx: { vqvae: VarVqvae; cfg: number; topK: number; topP: number; seed: number; log?: (s: string) => void },
): ActVAR | null {
  checkActVarFlags(o);
  if (!o.actvar) return null;
  const settings = actvarSettings(o);
  if (o.actvarModel !== undefined) throw new Error('buildActVar: load --actvar-model with loadActVarModelFlag');
  const log = ctx.log ?? (() => {});
  try {
    const a = buildBase(model, o, settings, ctx, log);
    if (o.baseline) {
      const calib = o.actvarCalib ?? 2;
      const rng = new Rng((ctx.seed ^ 0xba5e) >>> 0);
      const labels = Array.from({ length: calib }, () => rng.int(model.config.numClasses));
      const info = applyBaseline(a, o.baseline, calib > 0 && o.baseline === 'static-weights'
        ? { importance: { vqvae: ctx.vqvae, labels, cfg: ctx.cfg, topK: ctx.topK, topP: ctx.topP, rng } } : {});
      log(`ActVAR baseline ${o.baseline}` + (info.criterion ? ` (expert importance: ${info.criterion === 'activation' ? `mean expert output norm on ${calib} dense generation(s)` : 'weight magnitude'})` : ''));
    }
    return a;
  } catch (e) {
    if (e instanceof ActVarConfigError) throw new UserError(e.message);
    throw e;
  }
}

function buildBase(
  model: VAR, o: ActVarCliOptions, settings: Partial<ActVarConfig>,
  ctx: { vqvae: VarVqvae; cfg: number; topK: number; topP: number; seed: number }, log: (s: string) => void,
): ActVAR {
  if (o.actvarWeights) {
    try { return ActVAR.load(model, o.actvarWeights, settings); } catch (e) {
      if (e instanceof ActVarConfigError) throw e;
      throw new UserError(`cannot load --actvar-weights ${o.actvarWeights}: ${(e as Error).message}`);
    }
  }
  const cfg: Partial<ActVarConfig> = { ...settings, ...(o.actvarGrouping ? { grouping: o.actvarGrouping } : {}) };
  const calib = o.actvarCalib ?? 2;
  // --actvar-calib 0 asks for the data-free gates explicitly (raster-order token selection)
  const a = ActVAR.wrap(model, cfg, { allowUntrained: calib === 0 });
  if (calib > 0) {
    const rng = new Rng((ctx.seed ^ 0x5eed) >>> 0);
    const labels = Array.from({ length: calib }, () => rng.int(model.config.numClasses));
    log(`ActVAR: calibrating routers and selectors on ${calib} dense generation(s) (classes ${labels.join(',')}) …`);
    const t0 = performance.now();
    a.calibrate({ vqvae: ctx.vqvae, labels, cfg: ctx.cfg, topK: ctx.topK, topP: ctx.topP, rng });
    log(`ActVAR: calibrated in ${((performance.now() - t0) / 1e3).toFixed(1)} s (save with --actvar-save to skip this next time)`);
  } else {
    log('ActVAR: data-free init (router from the FFN weights, uniform selector: tokens kept in raster order)');
  }
  return a;
}

/** What an ActVAR run adds to `generate`: its hooks, the activation maps per batch, its output files. */
export interface ActVarRun {
  hooks: VarHooks;
  afterBatch(first: number, result: InferResult): void;
  /** path → bytes, written with the other outputs at the end. */
  outputs(): Map<string, Uint8Array>;
}

export function actvarRun(a: ActVAR, o: ActVarCliOptions, labels: readonly number[]): ActVarRun {
  const files = new Map<string, Uint8Array>();
  const width = String(Math.max(0, labels.length - 1)).length;
  const maps = o.actMaps ? new ActivationMaps(a.config.experts) : null;
  if (maps) a.onActivation = maps.record;
  return {
    hooks: a.hooks,
    afterBatch(first, res) {
      if (!maps) return;
      const B = res.idxBL.shape[0];
      for (let b = 0; b < B; b++) {
        const i = first + b;
        for (const [name, im] of maps.render(b)) {
          files.set(nodePath.join(o.actMaps!, `${String(i).padStart(width, '0')}_class${labels[i]}_${name}.png`), encodePng(im));
        }
      }
      maps.reset();
    },
    outputs() {
      if (o.actvarSave) files.set(o.actvarSave, encodeSafetensors(a.parameters(), a.gatesMetadata()));
      return files;
    },
  };
}

/**
 * --actvar-model FILE: the distilled ActVAR (its VAR inside) and the tokenizer to use with it: `tokenizer` when
 * given (refused when its SHA-256 differs from the one the file records), else the path the file records
 * (`actvar distill --tokenizer`, relative to where it ran: the repository root for the shipped model).
 */
export function loadActVarModelFlag(o: ActVarCliOptions, tokenizerFlag: string, tokenizer: string | undefined): { act: ActVAR; tokenizer: string } {
  const file = o.actvarModel!;
  checkReadable(file, '--actvar-model');
  let act: ActVAR;
  try { act = loadActVar(file, actvarSettings(o)); } catch (e) {
    throw new UserError(e instanceof ActVarConfigError ? e.message : `cannot load --actvar-model ${file}: ${(e as Error).message}`);
  }
  const meta = actVarModelInfo(act) ?? {};
  const tok = tokenizer ?? meta.tokenizer;
  if (tok === undefined) throw new UserError(`--actvar-model ${file} names no tokenizer: give ${tokenizerFlag} FILE (the tokenizer it was distilled with)`);
  checkReadable(tok, tokenizer === undefined ? `the tokenizer that --actvar-model ${file} names,` : tokenizerFlag);
  if (meta.tokenizer_sha256 && sha256File(tok) !== meta.tokenizer_sha256) {
    throw new UserError(`${tokenizer === undefined ? 'the tokenizer' : tokenizerFlag} ${tok} is not the tokenizer --actvar-model ${file} was distilled with ` +
      `(SHA-256 ${meta.tokenizer_sha256.slice(0, 16)}…${meta.tokenizer ? `, recorded path ${meta.tokenizer}` : ''})`);
  }
  return { act, tokenizer: tok };
}
