/**
 * VQVAE hyper-parameters, and inferring them from a state dict (docs/VAR.md §4, §8, Appendix B).
 *
 * Everything architectural is read off the tensors: ch and inChannels from `encoder.conv_in`, ch_mult from
 * the widths of the `encoder.down.{i}` levels, num_res_blocks from the blocks of level 0, attention from
 * the presence of `attn` keys, Cvae from `quant_conv` / the codebook, the vocabulary from the codebook,
 * share_quant_resi from the Phi key layout. The patch numbers are NOT in the VQVAE weights: they come
 * from the VAR (its `lvl_1L` buffer, see `patchNumsFromLvl1L`) or from a flag.
 */
import type { Tensor } from '../tensor/index.js';

export interface VqvaeConfig {
  /** Codebook size V (official 4096). */
  vocabSize: number;
  /** Latent channels = z channels (official 32). */
  Cvae: number;
  /** Base width (official 160). */
  ch: number;
  /** Width multipliers per resolution level (official [1, 1, 2, 2, 4]). */
  chMult: number[];
  /** ResnetBlocks per encoder level; the decoder has one more (official 2). */
  numResBlocks: number;
  /** Attention at the lowest-resolution level. */
  usingSa: boolean;
  /** Attention in the mid section. */
  usingMidSa: boolean;
  /** Phi ratio r (official 0.5; not stored in the weights, 0 when there are no Phi keys). */
  quantResi: number;
  /** 0: one Phi per scale, 1: one shared Phi, K ≥ 2: K partially shared Phis (official 4). */
  shareQuantResi: number;
  /** Number of Phis when shareQuantResi = 0 (default: one per scale). */
  numPhis?: number;
  /** Token-map side per scale; the last equals the latent side (official 1,2,3,4,5,6,8,10,13,16). */
  patchNums: number[];
  /** Image channels (3). */
  inChannels: number;
  /** GroupNorm groups (official 32; not stored in the weights). */
  normGroups: number;
  /** Kernel size of quant_conv / post_quant_conv (official 3). */
  quantConvKs: number;
  /** Commitment weight β of the training loss (official 0.25). */
  beta: number;
  /** Spatial downsampling of the encoder, 2^(levels − 1) (derived). */
  downsample: number;
  /** Image side, last patch number × downsample (derived). */
  imgSize: number;
}

/** Input to `completeVqvaeConfig`: any subset; derived fields are recomputed. */
export type VqvaeConfigInput = Partial<Omit<VqvaeConfig, 'downsample' | 'imgSize'>> & { imgSize?: number };

export const OFFICIAL_PATCH_NUMS: readonly number[] = Object.freeze([1, 2, 3, 4, 5, 6, 8, 10, 13, 16]);

/** The released `vae_ch160v4096z32.pth` (docs/VAR.md §4). */
export const OFFICIAL_VQVAE: Readonly<VqvaeConfigInput> = Object.freeze({
  vocabSize: 4096, Cvae: 32, ch: 160, chMult: [1, 1, 2, 2, 4], numResBlocks: 2, usingSa: true, usingMidSa: true,
  quantResi: 0.5, shareQuantResi: 4, patchNums: OFFICIAL_PATCH_NUMS.slice(), inChannels: 3, normGroups: 32, quantConvKs: 3, beta: 0.25,
});

/** Fill defaults (the official values), derive downsample / imgSize, and validate. */
export function completeVqvaeConfig(c: VqvaeConfigInput): VqvaeConfig {
  const d = OFFICIAL_VQVAE;
  const cfg: VqvaeConfig = {
    vocabSize: c.vocabSize ?? d.vocabSize!,
    Cvae: c.Cvae ?? d.Cvae!,
    ch: c.ch ?? d.ch!,
    chMult: (c.chMult ?? d.chMult!).slice(),
    numResBlocks: c.numResBlocks ?? d.numResBlocks!,
    usingSa: c.usingSa ?? d.usingSa!,
    usingMidSa: c.usingMidSa ?? d.usingMidSa!,
    quantResi: c.quantResi ?? d.quantResi!,
    shareQuantResi: c.shareQuantResi ?? d.shareQuantResi!,
    patchNums: (c.patchNums ?? d.patchNums!).slice(),
    inChannels: c.inChannels ?? d.inChannels!,
    normGroups: c.normGroups ?? d.normGroups!,
    quantConvKs: c.quantConvKs ?? d.quantConvKs!,
    beta: c.beta ?? d.beta!,
    downsample: 0,
    imgSize: 0,
  };
  if (c.numPhis !== undefined) cfg.numPhis = c.numPhis;
  const bad = (what: string): never => { throw new RangeError(`VQVAE config: ${what}`); };
  const posInt = (v: number) => Number.isInteger(v) && v >= 1;
  for (const k of ['vocabSize', 'Cvae', 'ch', 'numResBlocks', 'inChannels', 'normGroups', 'quantConvKs'] as const) {
    if (!posInt(cfg[k])) bad(`${k} must be a positive integer, got ${cfg[k]}`);
  }
  if (cfg.quantConvKs % 2 !== 1) bad(`quantConvKs must be odd (padding ks//2 keeps the size), got ${cfg.quantConvKs}`);
  if (!cfg.chMult.length || !cfg.chMult.every(posInt)) bad(`chMult must be a non-empty list of positive integers, got [${cfg.chMult.join(', ')}]`);
  if (!cfg.patchNums.length || !cfg.patchNums.every(posInt)) bad(`patchNums must be a non-empty list of positive integers, got [${cfg.patchNums.join(', ')}]`);
  if (!Number.isInteger(cfg.shareQuantResi) || cfg.shareQuantResi < 0) bad(`shareQuantResi must be 0, 1 or K ≥ 2, got ${cfg.shareQuantResi}`);
  if (!Number.isFinite(cfg.quantResi)) bad(`quantResi must be a number, got ${cfg.quantResi}`);
  if (cfg.numPhis !== undefined && !posInt(cfg.numPhis)) bad(`numPhis must be a positive integer, got ${cfg.numPhis}`);
  cfg.downsample = 2 ** (cfg.chMult.length - 1);
  cfg.imgSize = cfg.patchNums[cfg.patchNums.length - 1] * cfg.downsample;
  if (c.imgSize !== undefined && c.imgSize !== cfg.imgSize) {
    bad(`imgSize ${c.imgSize} does not match the last patch number ${cfg.patchNums[cfg.patchNums.length - 1]} × downsample ${cfg.downsample} = ${cfg.imgSize}`);
  }
  for (const m of cfg.chMult) {
    if ((cfg.ch * m) % cfg.normGroups !== 0) bad(`width ${cfg.ch}×${m} = ${cfg.ch * m} is not divisible by normGroups ${cfg.normGroups}`);
  }
  if (cfg.ch % cfg.normGroups !== 0) bad(`ch ${cfg.ch} is not divisible by normGroups ${cfg.normGroups}`);
  return cfg;
}

/**
 * Patch numbers from the VAR's `lvl_1L` buffer ([1, L] level index per token, non-decreasing): the
 * scale sizes are the run lengths, each a perfect square pn².
 */
export function patchNumsFromLvl1L(lvl: Tensor): number[] {
  const d = lvl.data;
  const counts: number[] = [];
  for (let t = 0; t < d.length; t++) {
    const s = d[t];
    if (s !== counts.length - 1) {
      if (s !== counts.length) throw new RangeError(`lvl_1L: token ${t} has level ${s} after level ${counts.length - 1}; levels must count up from 0 one by one`);
      counts.push(0);
    }
    counts[s]++;
  }
  return counts.map((n, s) => {
    const pn = Math.round(Math.sqrt(n));
    if (pn * pn !== n) throw new RangeError(`lvl_1L: level ${s} has ${n} tokens, not a square number`);
    return pn;
  });
}

function shapeOf(sd: Map<string, Tensor>, key: string): readonly number[] | null {
  return sd.get(key)?.shape ?? null;
}

/** Count i = 0, 1, … while `pattern(i)` is a key of sd. */
function countKeys(sd: Map<string, Tensor>, pattern: (i: number) => string): number {
  let i = 0;
  while (sd.has(pattern(i))) i++;
  return i;
}

/**
 * Infer the VQVAE architecture from its state dict. `patchNums` must be given (the weights don't hold
 * them); `overrides` set what the weights cannot tell (quantResi, normGroups, beta) or force a value.
 * Throws one error naming what could not be inferred.
 */
export function inferVqvaeConfig(sd: Map<string, Tensor>, patchNums?: readonly number[], overrides: VqvaeConfigInput = {}): VqvaeConfig {
  const problems: string[] = [];
  const need = (key: string, ndim: number): readonly number[] | null => {
    const s = shapeOf(sd, key);
    if (!s) { problems.push(`missing '${key}'`); return null; }
    if (s.length !== ndim) { problems.push(`'${key}' has shape [${s.join(', ')}], expected ${ndim} dimensions`); return null; }
    return s;
  };
  const convIn = need('encoder.conv_in.weight', 4);
  const qconv = need('quant_conv.weight', 4);
  const emb = need('quantize.embedding.weight', 2);
  const ch = convIn?.[0], inChannels = convIn?.[1];

  const levels = countKeys(sd, (i) => `encoder.down.${i}.block.0.conv1.weight`);
  if (levels === 0) problems.push("no encoder levels ('encoder.down.0.block.0.conv1.weight' is missing)");
  const chMult: number[] = [];
  for (let i = 0; i < levels && ch; i++) {
    const w = shapeOf(sd, `encoder.down.${i}.block.0.conv1.weight`)!;
    if (w[0] % ch !== 0) problems.push(`'encoder.down.${i}.block.0.conv1.weight' has ${w[0]} output channels, not a multiple of ch ${ch}`);
    chMult.push(w[0] / ch);
  }
  const numResBlocks = countKeys(sd, (j) => `encoder.down.0.block.${j}.conv1.weight`);
  const usingSa = levels > 0 && sd.has(`encoder.down.${levels - 1}.attn.0.qkv.weight`);
  const usingMidSa = sd.has('encoder.mid.attn_1.qkv.weight');

  const Cvae = qconv?.[0];
  if (qconv && emb && emb[1] !== qconv[0]) problems.push(`codebook width ${emb[1]} differs from quant_conv's ${qconv[0]} channels`);
  const vocabSize = emb?.[0];

  // Phi layout: qresi_ls.{k} → K, qresi → 1, {si} → 0 (one per scale); none → ratio 0 (identity)
  const nLs = countKeys(sd, (k) => `quantize.quant_resi.qresi_ls.${k}.weight`);
  const nNon = countKeys(sd, (k) => `quantize.quant_resi.${k}.weight`);
  const shared = sd.has('quantize.quant_resi.qresi.weight');
  let shareQuantResi: number, numPhis: number | undefined, quantResi: number;
  if ([nLs > 0, nNon > 0, shared].filter(Boolean).length > 1) {
    problems.push('Phi keys of more than one layout (qresi_ls.{k}, qresi, {si}) are present');
  }
  if (nLs > 0) { shareQuantResi = nLs; quantResi = 0.5; }
  else if (shared) { shareQuantResi = 1; quantResi = 0.5; }
  else if (nNon > 0) { shareQuantResi = 0; numPhis = nNon; quantResi = 0.5; }
  else { shareQuantResi = OFFICIAL_VQVAE.shareQuantResi!; quantResi = 0; }

  const pns = overrides.patchNums ?? patchNums;
  if (!pns || !pns.length) {
    problems.push('patch numbers are not stored in VQVAE weights: pass them (from the VAR checkpoint\'s lvl_1L, or a --patch-nums flag)');
  }
  if (problems.length) throw new Error(`cannot infer the VQVAE architecture from the state dict:\n  - ${problems.join('\n  - ')}`);

  const input: VqvaeConfigInput = {
    vocabSize, Cvae, ch, chMult, numResBlocks, usingSa, usingMidSa, quantResi, shareQuantResi,
    patchNums: pns!.slice(), inChannels, quantConvKs: qconv![2], ...overrides,
  };
  if (numPhis !== undefined && overrides.numPhis === undefined) input.numPhis = numPhis;
  // GroupNorm groups are not in the weights: official 32, unless that cannot divide the widths
  if (overrides.normGroups === undefined) {
    const widths = [ch!, ...chMult.map((m) => ch! * m)];
    if (!widths.every((w) => w % 32 === 0)) {
      throw new Error(`cannot infer the VQVAE architecture: widths [${widths.join(', ')}] are not all divisible by the official 32 GroupNorm groups; pass normGroups explicitly`);
    }
  }
  return completeVqvaeConfig(input);
}
