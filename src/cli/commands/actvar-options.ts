/**
 * ActVAR on the command line:
 * - `actvar generate --actvar [--token-rates a,b] [--expert-rate g] [--experts N] [--scales i,j]
 *   [--actvar-weights FILE] [--actvar-calib N] [--actvar-grouping contiguous|coactivation]
 *   [--actvar-save FILE] [--act-maps DIR]` — a plug-in of the generate command
 *   (`actvarGenerateExtension`, registered in generate.ts's `generateExtensions`);
 * - `actvar bench actvar` (`actvarBenchSubcommand`, registered in bench.ts's table).
 *
 * Without --actvar-weights the routers and selectors get the training-free initialisation of
 * src/actvar/init.ts: a least-squares calibration on --actvar-calib dense generations of random
 * classes (default 2), or with --actvar-calib 0 the data-free router and a uniform selector.
 */
import * as nodePath from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { UserError } from '../errors.js';
import { unreadableFile, unwritableTarget } from '../../io/files.js';
import { Rng } from '../../tensor/index.js';
import type { VAR, VarVqvae, InferResult } from '../../var/var.js';
import { ActVAR } from '../../actvar/actvar.js';
import { ActivationMaps } from '../../actvar/actmaps.js';
import { ActVarConfigError, type ActVarConfig, type ExpertGrouping } from '../../actvar/config.js';
import { benchActVar, type ActVarBenchResult } from '../../../bench/actvar.js';
import { encodeSafetensors } from '../../io/safetensors.js';
import { configToMetadata } from '../../actvar/config.js';
import { encodePng } from '../../image/png.js';
import { listOption, numberOption, intOpt, nonNegInt, actvarSettings } from './flops.js';
import type { GenerateExtension, GenerateOptions } from './generate.js';
import type { BenchSubcommand } from './bench.js';

/** The parsed ActVAR flags (commander camel-cases them). */
export interface ActVarCliOptions {
  actvar?: boolean;
  tokenRates?: number[];
  expertRate?: number;
  experts?: number;
  scales?: number[];
  actvarWeights?: string;
  actvarCalib?: number;
  actvarGrouping?: ExpertGrouping;
  actvarSave?: string;
  actMaps?: string;
  [k: string]: unknown;
}

function groupingOption(v: string): ExpertGrouping {
  if (v !== 'contiguous' && v !== 'coactivation') throw new InvalidArgumentError(`expected 'contiguous' or 'coactivation', got '${v}'`);
  return v;
}

/** Declare the ActVAR flags on a command. */
export function addActVarOptions(cmd: Command): Command {
  return cmd
    .option('--actvar', 'ActVAR: sparse tokens and FFN experts at the activated scales')
    .option('--token-rates <a,b>', 'ActVAR token activation rate per activated scale, fractions (default 0.75,0.75)', listOption('--token-rates'))
    .option('--expert-rate <g>', 'ActVAR fraction of FFN experts each token runs (default 0.75)', numberOption('--expert-rate'))
    .option('--experts <n>', 'ActVAR experts per FFN (default 16)', intOpt('--experts'))
    .option('--scales <i,j>', 'ActVAR activated scale indices, 0-based (default: the last two)', listOption('--scales', true))
    .option('--actvar-weights <file>', 'trained or saved ActVAR router/selector weights (.safetensors)')
    .option('--actvar-calib <n>', 'without --actvar-weights: dense calibration generations for the training-free init (0 = data-free)', nonNegInt('--actvar-calib'), 2)
    .option('--actvar-grouping <g>', 'hidden units → experts: contiguous or coactivation (needs --actvar-calib > 0)', groupingOption)
    .option('--actvar-save <file>', 'save the router/selector weights used (.safetensors)')
    .option('--act-maps <dir>', 'write activation maps (selected tokens per block, active experts per token) as PNGs');
}

function checkWritableDir(dir: string, flag: string): void {
  const why = unwritableTarget(dir, true);
  if (why) throw new UserError(`${flag} ${dir}: ${why}`);
}

/**
 * Build the ActVAR of the command line for `model`, or null without --actvar. Validates the flags
 * (UserError), loads --actvar-weights or runs the training-free initialisation (calibration needs
 * `ctx.vqvae`).
 */
export function applyActVarOptions(
  model: VAR, o: ActVarCliOptions,
  ctx: { vqvae?: VarVqvae; cfg?: number; topK?: number; topP?: number; seed?: number; log?: (s: string) => void } = {},
): ActVAR | null {
  const settings = actvarSettings(o);
  if (!o.actvar) {
    const given = ['tokenRates', 'expertRate', 'experts', 'scales', 'actvarWeights', 'actvarGrouping', 'actvarSave', 'actMaps'].filter((k) => o[k] !== undefined);
    if (given.length) throw new UserError(`--${given[0].replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} needs --actvar`);
    return null;
  }
  if (o.actvarWeights !== undefined) {
    const why = unreadableFile(o.actvarWeights);
    if (why) throw new UserError(`--actvar-weights ${o.actvarWeights}: cannot read the file (${why})`);
  }
  if (o.actMaps !== undefined) checkWritableDir(o.actMaps, '--act-maps');
  const log = ctx.log ?? (() => {});
  try {
    if (o.actvarWeights) {
      if (o.actvarGrouping) throw new UserError('--actvar-grouping is stored with --actvar-weights; leave it out');
      return ActVAR.load(model, o.actvarWeights, settings);
    }
    const cfg: Partial<ActVarConfig> = { ...settings, ...(o.actvarGrouping ? { grouping: o.actvarGrouping } : {}) };
    const calib = o.actvarCalib ?? 2;
    if (calib === 0 && cfg.grouping === 'coactivation') throw new UserError('--actvar-grouping coactivation needs calibration data: give --actvar-calib 1 or more');
    const a = ActVAR.wrap(model, cfg);
    if (calib > 0) {
      if (!ctx.vqvae) throw new Error('applyActVarOptions: calibration needs the VQVAE');
      const rng = new Rng((ctx.seed ?? 0) ^ 0x5eed);
      const labels = Array.from({ length: calib }, () => rng.int(model.config.numClasses));
      log(`ActVAR: calibrating routers and selectors on ${calib} dense generation(s) (classes ${labels.join(',')}) …`);
      const t0 = performance.now();
      a.calibrate({ vqvae: ctx.vqvae, labels, cfg: ctx.cfg, topK: ctx.topK, topP: ctx.topP, rng });
      log(`ActVAR: calibrated in ${((performance.now() - t0) / 1e3).toFixed(1)} s (save with --actvar-save to skip this next time)`);
    } else {
      log('ActVAR: data-free init (router from the FFN weights, uniform selector: tokens kept in raster order)');
    }
    return a;
  } catch (e) {
    if (e instanceof ActVarConfigError) throw new UserError(e.message);
    throw e;
  }
}

/** The generate plug-in: flags, the ActVAR hook, activation maps and --actvar-save. */
export const actvarGenerateExtension: GenerateExtension = {
  configure(cmd) { addActVarOptions(cmd); },
  prepare(model, opts: GenerateOptions, ctx?: { vqvae?: VarVqvae }) {
    const o = opts as GenerateOptions & ActVarCliOptions;
    const a = applyActVarOptions(model, o, {
      vqvae: ctx?.vqvae, cfg: o.cfg, topK: o.topK, topP: o.topP, seed: o.seed,
      log: o.quiet ? undefined : (s) => process.stderr.write(`actvar: ${s}\n`),
    });
    if (!a) return undefined;
    const files = new Map<string, Uint8Array | string>();
    const labels: number[] = [];
    for (const c of o.classes) for (let k = 0; k < o.perClass; k++) labels.push(c);
    const width = String(Math.max(0, labels.length - 1)).length;
    const maps = o.actMaps ? new ActivationMaps(a.config.experts) : null;
    if (maps) a.onActivation = maps.record;
    return {
      hooks: a.hooks,
      afterBatch(first: number, res: InferResult) {
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
        if (o.actvarSave) files.set(o.actvarSave, encodeSafetensors(a.parameters(), configToMetadata(a.config)));
        return files;
      },
    };
  },
};

/** `bench actvar --profile` as text: seconds (of which sgemm) and GFLOPs per scale, the phases of the activated scales, the ceiling. */
function profileTable(r: ActVarBenchResult): string {
  const f = (v: number | undefined) => (v ?? 0).toFixed(3).padStart(7);
  const g = (v: number | undefined) => (v ?? 0).toFixed(1).padStart(7);
  const lines = ['scale   dense s (sgemm)   ActVAR s (sgemm)   dense GFLOPs  ActVAR GFLOPs'];
  (r.dense_scale_s ?? []).forEach((d, i) => {
    lines.push(`${String(i).padStart(5)} ${f(d)} (${f(r.dense_scale_sgemm_s?.[i])}) ${f(r.actvar_scale_s?.[i])} (${f(r.actvar_scale_sgemm_s?.[i])})` +
      `   ${g(r.dense_scale_gflops?.[i])}      ${g(r.actvar_scale_gflops?.[i])}`);
  });
  const phases = (o: Record<string, number> | undefined) => Object.entries(o ?? {}).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ');
  lines.push(`activated scales, dense: ${phases(r.dense_phases_s)}`, `activated scales, ActVAR: ${phases(r.actvar_phases_s)}`);
  const pct = (v: number | undefined) => `${(100 * (v ?? 0)).toFixed(1)}%`;
  lines.push(`activated scales: ${pct(r.activated_time_share)} of the dense time, ${pct(r.activated_flops_share)} of its FLOPs → ` +
    `ceiling of the ratio ${(r.ceiling ?? 0).toFixed(3)} (if their time followed their FLOPs exactly)`);
  return lines.join('\n') + '\n';
}

/** `actvar bench actvar`: dense vs ActVAR transformer seconds, random weights. */
export const actvarBenchSubcommand: BenchSubcommand = {
  name: 'actvar',
  description: 'wall-clock of the transformer part of one generation, dense VAR vs ActVAR (random weights, CFG on)',
  configure(cmd) {
    cmd
      .option('--preset <name>', 'architecture: d16, d20, d24, d30', 'd16')
      .option('--token-rates <a,b>', 'token activation rates (default 0.75,0.75)', listOption('--token-rates'))
      .option('--expert-rate <g>', 'expert activation rate (default 0.75)', numberOption('--expert-rate'))
      .option('--experts <n>', 'experts per FFN (default 16)', intOpt('--experts'))
      .option('--scales <i,j>', 'activated scales (default: the last two)', listOption('--scales', true))
      .option('--batch <n>', 'images (rows = 2·batch with CFG)', intOpt('--batch'), 1)
      .option('--repeats <n>', 'timed runs of each after one warm-up (best reported)', intOpt('--repeats'), 3)
      .option('--profile', 'also time each scale and the phases of the activated scales')
      .option('--json', 'one JSON line');
  },
  run(opts) {
    const settings = actvarSettings(opts);
    try {
      const r = benchActVar({
        preset: opts.preset as string, actvar: settings, batch: opts.batch as number, repeats: opts.repeats as number,
        profile: !!opts.profile, log: opts.json ? undefined : (s) => process.stderr.write(`actvar: ${s}\n`),
      });
      if (opts.json) process.stdout.write(JSON.stringify(r) + '\n');
      else {
        process.stdout.write(`${r.preset} ${r.setting}, batch ${r.batch}, CFG on: dense ${r.dense_s.toFixed(2)} s (${r.dense_gflops.toFixed(1)} GFLOPs), ` +
          `ActVAR ${r.actvar_s.toFixed(2)} s (${r.actvar_gflops.toFixed(1)} GFLOPs)\n` +
          `FLOPs saving ${(100 * r.flops_saving).toFixed(1)}%, time saving ${(100 * r.time_saving).toFixed(1)}%, ratio ${r.efficiency.toFixed(3)}\n`);
        if (opts.profile) process.stdout.write(profileTable(r));
      }
    } catch (e) {
      if (e instanceof ActVarConfigError) throw new UserError(e.message);
      if (e instanceof RangeError && /preset/.test(e.message)) throw new UserError(e.message);
      throw e;
    }
  },
};
