/**
 * The CLI's one option layer: every value parser, the flag groups several commands share, and the
 * sampling defaults. Commands declare their own flags with these parsers and add the shared groups
 * with the `add…Options` functions, so a flag means and checks the same everywhere.
 *
 * API (all parsers throw commander's InvalidArgumentError, which the program reports as
 * `actvar: error: option '--x <v>' argument 'bad' is invalid. <why>` with exit 2):
 * - `int(flag, {min, max})`, `num(flag, {min, max, above, below})`: one finite number written in decimal
 *   (an empty value, `0x10`, `Infinity` or `NaN` are refused); `above` / `below` make `min` / `max` exclusive.
 * - `intList(flag, range, count?)`, `numList(flag, range)`: comma-separated lists of the same.
 * - `seed(flag)`: an integer in [0, 2³² − 1] (the RNG's seed is 32 bits; larger values are refused
 *   instead of being reduced silently).
 * - `path(flag)`: a non-empty path (`--out ''` is refused).
 * - `SAMPLING_DEFAULTS` and `addSamplingOptions(cmd)`: --cfg, --top-k, --top-p, --seed.
 * - `addActVarSettingsOptions(cmd)`: --token-rates, --expert-rate, --experts, --scales, --kv-policy;
 *   `actvarSettings(opts)` turns them into a `Partial<ActVarConfig>`.
 * - `addActVarInitOptions(cmd, calibDefault)`: --actvar-weights, --actvar-calib.
 * - `addWeightsDtypeOption(cmd)`: --weights-dtype fp32|bf16 (how the VAR's weight matrices are held).
 * - `addActVarBaselineOption(cmd)`: --baseline static-weights|fixed-tokens.
 */
import { Command, InvalidArgumentError } from 'commander';
import type { ActVarConfig, KvPolicy } from '../actvar/config.js';
import { WEIGHTS_DTYPES, type WeightsDtype } from '../var/weights-dtype.js';
import { BASELINE_NAMES } from '../actvar/baselines.js';

export interface Range {
  min?: number;
  max?: number;
  /** `min` is exclusive (e.g. rates in (0, 1]). */
  above?: boolean;
  /** `max` is exclusive (e.g. probabilities in [0, 1)). */
  below?: boolean;
}

function rangeText(r: Range, integer: boolean): string {
  const kind = integer ? 'an integer' : 'a number';
  const { min, max, above, below } = r;
  if (min !== undefined && max !== undefined) return `${kind} in ${above ? '(' : '['}${min}, ${max}${below ? ')' : ']'}`;
  if (min !== undefined) return `${kind} ${above ? '>' : '>='} ${min}`;
  if (max !== undefined) return `${kind} ${below ? '<' : '<='} ${max}`;
  return kind;
}

/** Strict decimal number: no empty string, hex, Infinity or NaN. */
function parseNumber(v: string): number {
  const s = v.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s)) return NaN;
  return Number(s);
}

function inRange(n: number, r: Range, integer: boolean): boolean {
  if (!Number.isFinite(n)) return false;
  if (integer && !Number.isSafeInteger(n)) return false;
  if (r.min !== undefined && (r.above ? n <= r.min : n < r.min)) return false;
  if (r.max !== undefined && (r.below ? n >= r.max : n > r.max)) return false;
  return true;
}

function scalar(flag: string, r: Range, integer: boolean, hint?: (n: number) => string | undefined): (v: string) => number {
  return (v) => {
    const n = parseNumber(v);
    if (!inRange(n, r, integer)) {
      const h = Number.isFinite(n) ? hint?.(n) : undefined;
      throw new InvalidArgumentError(`${flag} must be ${rangeText(r, integer)}, got '${v}'${h ? ` (${h})` : ''}`);
    }
    return n;
  };
}

/** An integer (default range: >= 0). */
export function int(flag: string, r: Range = { min: 0 }): (v: string) => number {
  return scalar(flag, r, true);
}

/** A finite number (default: any). */
export function num(flag: string, r: Range = {}): (v: string) => number {
  return scalar(flag, r, false);
}

function list(flag: string, r: Range, integer: boolean, hint?: (n: number) => string | undefined, count?: number): (v: string) => number[] {
  return (v) => {
    const parts = v.split(',').map((s) => s.trim());
    const vals = parts.map(parseNumber);
    const bad = vals.findIndex((n) => !inRange(n, r, integer));
    if (!v.trim() || bad >= 0 || (count !== undefined && vals.length !== count)) {
      const h = bad >= 0 && Number.isFinite(vals[bad]) ? hint?.(vals[bad]) : undefined;
      throw new InvalidArgumentError(`${flag} must be ${count === undefined ? 'a comma-separated list' : `${count} comma-separated values`}, each ${rangeText(r, integer)}, got '${v}'${h ? ` (${h})` : ''}`);
    }
    return vals;
  };
}

/** Comma-separated integers; with `count`, exactly that many (e.g. a GEMM shape M,N,K). */
export function intList(flag: string, r: Range = { min: 0 }, count?: number): (v: string) => number[] { return list(flag, r, true, undefined, count); }
export function numList(flag: string, r: Range = {}): (v: string) => number[] { return list(flag, r, false); }

/** Seeds are 32-bit (the RNG's state); values ≥ 2³² are refused rather than reduced mod 2³². */
export const SEED_MAX = 2 ** 32 - 1;
export function seed(flag: string): (v: string) => number { return int(flag, { min: 0, max: SEED_MAX }); }

/** A non-empty path (the value is used as given). */
export function path(flag: string): (v: string) => string {
  return (v) => {
    if (v.trim() === '') throw new InvalidArgumentError(`${flag} needs a path, got an empty string`);
    return v;
  };
}

/** One of `choices`. */
export function choice<T extends string>(flag: string, choices: readonly T[]): (v: string) => T {
  return (v) => {
    if (!(choices as readonly string[]).includes(v)) throw new InvalidArgumentError(`${flag} must be one of ${choices.join(', ')}, got '${v}'`);
    return v as T;
  };
}

// ---------------------------------------------------------------------------------------------
// sampling

/**
 * What every sampling command uses unless told otherwise: the official VAR sampling settings
 * (classifier-free guidance 1.5, top-k 900, top-p 0.96; README "Command line" says why).
 * The library's `autoregressiveInfer` keeps the official function's own defaults (no filtering).
 */
export const SAMPLING_DEFAULTS = Object.freeze({ cfg: 1.5, topK: 900, topP: 0.96, seed: 0 });

/** Guidance above this only sharpens further, and far above it float32 logits overflow. */
export const CFG_MAX = 1000;

export interface SamplingFlags { cfg: number; topK: number; topP: number; seed: number }

/** --cfg, --top-k, --top-p, --seed with `SAMPLING_DEFAULTS`. */
export function addSamplingOptions(cmd: Command, seedHelp = 'sampling seed (each image has its own stream derived from it)'): Command {
  const d = SAMPLING_DEFAULTS;
  return cmd
    .option('--cfg <w>', 'classifier-free guidance strength (ramps 0 → w over the scales)', num('--cfg', { min: 0, max: CFG_MAX }), d.cfg)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off; no effect when k >= the vocabulary)', int('--top-k', { min: 0, max: 2 ** 31 - 1 }), d.topK)
    .option('--top-p <p>', 'nucleus sampling mass (0 = off)', num('--top-p', { min: 0, max: 1 }), d.topP)
    .option('--seed <s>', `${seedHelp}, 0..${SEED_MAX}`, seed('--seed'), d.seed);
}

// ---------------------------------------------------------------------------------------------
// ActVAR

const rateHint = (n: number): string | undefined => (n > 1 && n <= 100 ? `rates are fractions in (0, 1], e.g. 0.75 for 75%` : undefined);

/** ActVAR settings flags (defaults in src/actvar/config.ts). */
export function addActVarSettingsOptions(cmd: Command): Command {
  return cmd
    .option('--token-rates <a,b>', 'ActVAR token activation rate per activated scale, fractions in (0, 1] (default 0.75,0.75)',
      list('--token-rates', { min: 0, max: 1, above: true }, false, rateHint))
    .option('--expert-rate <g>', 'ActVAR fraction of FFN experts each token runs, in (0, 1] (default 0.75)',
      scalar('--expert-rate', { min: 0, max: 1, above: true }, false, rateHint))
    .option('--experts <n>', 'ActVAR experts per FFN, dividing the FFN width (default 16)', int('--experts', { min: 1, max: 65536 }))
    .option('--scales <i,j>', 'ActVAR activated scale indices, 0-based (default: the last two)', intList('--scales', { min: 0, max: 255 }))
    .option('--kv-policy <p>', 'ActVAR keys/values at activated scales: kept (only the kept tokens\' enter the KV cache) or all (every token\'s; queries of kept tokens only) (default kept)',
      choice('--kv-policy', ['kept', 'all'] as const));
}

/** --actvar-weights and --actvar-calib (the training-free initialisation without weights). */
export function addActVarInitOptions(cmd: Command, calibDefault: number): Command {
  return cmd
    .option('--actvar-weights <file>', 'trained or saved ActVAR router/selector weights (.safetensors) instead of the training-free init', path('--actvar-weights'))
    .option('--actvar-calib <n>', 'without --actvar-weights: dense generations that calibrate the training-free init (0 = data-free)',
      int('--actvar-calib', { min: 0, max: 1000 }), calibDefault);
}

/** --baseline: the paper's comparison methods built from ActVAR's parts (src/actvar/baselines.ts). */
export function addActVarBaselineOption(cmd: Command): Command {
  return cmd.option('--baseline <name>',
    'with --actvar: run a baseline instead of ActVAR: static-weights (one fixed set of K_w experts per FFN for all tokens, by mean expert output norm on the calibration generations, or weight magnitude with --actvar-calib 0) or fixed-tokens (tokens chosen once per scale at the first block, reused by the later blocks)',
    choice('--baseline', BASELINE_NAMES));
}

/** The ActVAR settings given on the command line (undefined = the library's default). */
export function actvarSettings(o: { tokenRates?: number[]; expertRate?: number; experts?: number; scales?: number[]; kvPolicy?: KvPolicy }): Partial<ActVarConfig> {
  const s: Partial<ActVarConfig> = {};
  if (o.tokenRates !== undefined) s.tokenRates = o.tokenRates;
  if (o.expertRate !== undefined) s.expertRate = o.expertRate;
  if (o.experts !== undefined) s.experts = o.experts;
  if (o.scales !== undefined) s.scales = o.scales;
  if (o.kvPolicy !== undefined) s.kvPolicy = o.kvPolicy;
  return s;
}

// ---------------------------------------------------------------------------------------------
// weights

/**
 * --weights-dtype fp32|bf16 (default fp32): bf16 holds the VAR's weight matrices as bfloat16 with float32
 * accumulation (src/var/weights-dtype.ts): half their memory, faster GEMMs, results close to but not the
 * same bits as fp32 (docs/BENCHMARKS.md "bf16 weights").
 */
/** Why --weights-dtype bf16 and --actvar exclude each other (generate, eval). */
export const BF16_ACTVAR = "--weights-dtype bf16 does not combine with --actvar or --actvar-model yet (ActVAR's expert FFN kernels read float32 weights); use --weights-dtype fp32 with --actvar";

export function addWeightsDtypeOption(cmd: Command): Command {
  return cmd.option('--weights-dtype <t>', 'VAR weight matrices in memory: fp32 (parity with the official model) or bf16 (half the memory, float32 accumulation)',
    choice<WeightsDtype>('--weights-dtype', WEIGHTS_DTYPES), 'fp32');
}
