/**
 * From run records (run.ts) to what the report shows: per setting the mean ± std over seeds of every
 * number, the FLOPs saving against the dense run of the same seed, and the verdict of every claim of
 * the paper's Tables 1–6 and Fig. 9 (stats.ts says how a verdict is decided).
 *
 * The paper's own numbers (ImageNet 256, VAR-d16…d30, Inception FID) are quoted beside ours where one
 * exists; they are facts from the paper (`../shared/paper/actvar.txt`), not results of this project.
 */
import { aggregate, spearman, verdictOf, type Agg, type Verdict } from './stats.js';
import { makeSetting, TABLE2_RATES, EXPERT_COUNTS, type ActVarSpec, type InitKind, type Setting } from './plan.js';
import type { RunRecord } from './run.js';

export interface Row {
  setting: Setting;
  runs: RunRecord[];
  flopsSaving: Agg;
  gflops: Agg;
  fid: Agg;
  isMean: Agg;
  precision: Agg;
  recall: Agg;
  classAccuracy: Agg;
  b1Seconds: Agg;
  b1Rate: Agg;
  bNSeconds: Agg;
  bNRate: Agg;
  /** 1 − seconds/dense seconds at the large batch, per seed. */
  timeSavingN: Agg;
  timeSaving1: Agg;
  batchN: number;
}

export interface Claim {
  source: string;
  init: InitKind | null;
  text: string;
  /** The paper's numbers for it. */
  paper: string;
  /** Ours, as printed. */
  ours: string;
  verdict: Verdict;
}

export interface Analysis {
  rows: Map<string, Row>;
  claims: Claim[];
  inits: InitKind[];
  seeds: number[];
  records: RunRecord[];
}

/** Paper values (Tables 1–6; VAR-d20 unless noted: the paper's ablations use d20). */
export const PAPER = {
  table1: { dense: { d16: { fid: 3.30, is: 274.4, pre: 0.84, rec: 0.51 }, d20: { fid: 2.57, is: 302.6, pre: 0.83, rec: 0.56 } },
    actvar: { d16: { saving: 0.202, fid: 3.51, is: 273.5, pre: 0.85, rec: 0.49 }, d20: { saving: 0.212, fid: 2.72, is: 290.4, pre: 0.83, rec: 0.55 } } },
  table2: [[0.432, 3.30, 256.8], [0.399, 3.21, 265.1], [0.328, 2.92, 274.1], [0.282, 2.89, 277.1], [0.212, 2.72, 290.4]] as [number, number, number][],
  table3: { woDW: [0.142, 2.67, 290.5], woAT: [0.094, 2.70, 288.6], full: [0.212, 2.72, 290.4] },
  table4: { fixed: [3.83, 242.4], dynamic: [2.72, 290.4] },
  table5: { static: [3.04, 274.2], dynamic: [2.72, 290.4] },
  table6: { before: [0.081, 2.82, 282.7], last: [0.212, 2.72, 290.4] },
} as const;

const spec = (o: Partial<ActVarSpec>, init: InitKind): ActVarSpec => ({
  tokenRates: [0.75, 0.75], expertRate: 0.75, experts: 16, scales: 'last', kvPolicy: 'kept', baseline: null, init, ...o,
});
/** Setting ids by role, for one init. */
export function ids(init: InitKind) {
  const id = (o: Partial<ActVarSpec>): string => makeSetting(spec(o, init)).id;
  return {
    main: id({}),
    rates: TABLE2_RATES.map(([a, b, g]) => id({ tokenRates: [a, b], expertRate: g })),
    woDW: id({ expertRate: 1 }), woAT: id({ tokenRates: [1, 1] }),
    fixed: id({ baseline: 'fixed-tokens' }), static: id({ baseline: 'static-weights' }),
    before: id({ scales: 'before' }),
    experts: EXPERT_COUNTS.map((e) => id({ experts: e })),
    kvAll: id({ kvPolicy: 'all' }),
  };
}

function bySeed(rs: RunRecord[]): Map<number, RunRecord> { return new Map(rs.map((r) => [r.seed, r])); }

export function analyse(records: RunRecord[]): Analysis {
  const groups = new Map<string, RunRecord[]>();
  for (const r of records) {
    if (!groups.has(r.setting.id)) groups.set(r.setting.id, []);
    groups.get(r.setting.id)!.push(r);
  }
  const dense = bySeed(groups.get('dense') ?? []);
  const rows = new Map<string, Row>();
  for (const [id, rs] of groups) {
    rs.sort((a, b) => a.seed - b.seed);
    const per = <T>(f: (r: RunRecord) => T): T[] => rs.map(f);
    const vsDense = (f: (r: RunRecord, d: RunRecord) => number): Agg => aggregate(rs.filter((r) => dense.has(r.seed)).map((r) => f(r, dense.get(r.seed)!)));
    rows.set(id, {
      setting: rs[0].setting as Setting, runs: rs,
      flopsSaving: vsDense((r, d) => 1 - r.gflopsPerImage / d.gflopsPerImage),
      gflops: aggregate(per((r) => r.gflopsPerImage)),
      fid: aggregate(per((r) => r.metrics.fid)), isMean: aggregate(per((r) => r.metrics.isMean)),
      precision: aggregate(per((r) => r.metrics.precision)), recall: aggregate(per((r) => r.metrics.recall)),
      classAccuracy: aggregate(per((r) => r.metrics.classAccuracy)),
      b1Seconds: aggregate(per((r) => r.latency.batch1.secondsPerImage)), b1Rate: aggregate(per((r) => r.latency.batch1.imagesPerSecond)),
      bNSeconds: aggregate(per((r) => r.latency.batchN.secondsPerImage)), bNRate: aggregate(per((r) => r.latency.batchN.imagesPerSecond)),
      timeSavingN: vsDense((r, d) => 1 - r.latency.batchN.secondsPerImage / d.latency.batchN.secondsPerImage),
      timeSaving1: vsDense((r, d) => 1 - r.latency.batch1.secondsPerImage / d.latency.batch1.secondsPerImage),
      batchN: rs[0].latency.batchN.batch,
    });
  }
  const order: InitKind[] = ['training-free', 'distilled'];
  const inits = order.filter((k) => records.some((r) => r.setting.actvar?.init === k));
  const seeds = [...new Set(records.map((r) => r.seed))].sort((a, b) => a - b);
  const claims: Claim[] = [];
  // distilled claims only where the plan distilled both sides (the default plans distil ActVAR and the two baselines)
  for (const init of inits) claims.push(...claimsFor(init, rows, dense).filter((c) => init === 'training-free' || c.verdict.kind !== 'not measured'));
  if (inits.includes('training-free') && inits.includes('distilled')) {
    const tf = ids('training-free'), di = ids('distilled');
    claims.push(paired('§3.3–3.4', null, 'Distilling the gates (stage 1) and fine-tuning the sparse model (stage 2) gives a better FID than the training-free gates at (75,75;75)',
      'the paper trains; it has no training-free row', rows, tf.main, di.main, (a, b) => a.metrics.fid - b.metrics.fid, 'FID'));
  }
  return { rows, claims, inits, seeds, records };
}

const f3 = (v: number): string => (Number.isFinite(v) ? v.toFixed(3) : '–');
const pc = (v: number): string => (Number.isFinite(v) ? `${(v * 100).toFixed(1)} %` : '–');

/** A claim decided on per-seed differences d(a, b) (positive = as claimed), a = the run the paper says is worse or the reference. */
function paired(source: string, init: InitKind | null, text: string, paper: string, rows: Map<string, Row>, aId: string, bId: string,
  d: (a: RunRecord, b: RunRecord) => number, what: string, fmt: (v: number) => string = f3, exact = false): Claim {
  const A = rows.get(aId), B = rows.get(bId);
  if (!A || !B) return { source, init, text, paper, ours: 'not run', verdict: verdictOf([]) };
  const bs = bySeed(B.runs);
  const diffs = A.runs.filter((r) => bs.has(r.seed)).map((r) => d(r, bs.get(r.seed)!));
  const v = verdictOf(diffs, fmt, { exact });
  return { source, init, text, paper, ours: `${what}: ${fmtAgg(aggregate(diffs), fmt)} (${diffs.length} seed${diffs.length === 1 ? '' : 's'})`, verdict: v };
}

function fmtAgg(a: Agg, fmt: (v: number) => string): string {
  return a.n > 1 ? `${fmt(a.mean)} ± ${fmt(a.std)}` : a.n === 1 ? fmt(a.mean) : '–';
}

function claimsFor(init: InitKind, rows: Map<string, Row>, dense: Map<number, RunRecord>): Claim[] {
  const I = ids(init), out: Claim[] = [];
  const tag = init === 'training-free' ? ' [training-free gates]' : ' [distilled]';
  const P = PAPER;
  const main = rows.get(I.main);
  // ---- Table 1
  {
    const sv = main?.flopsSaving;
    const diffs = (sv?.values ?? []).map((s) => Math.min(s - 0.15, 0.30 - s));
    out.push({
      source: 'Table 1', init, text: `ActVAR (75,75;75) saves about a fifth of the transformer FLOPs (claim read as: saving in [15 %, 30 %])${tag}`,
      paper: '20.2 % (d16) … 22.3 % (d30)', ours: `saving ${sv ? fmtAgg(sv, pc) : 'not run'}`, verdict: verdictOf(diffs, pc, { exact: true }),
    });
  }
  const densePseudo = 'dense';
  out.push(paired('Table 1', init, `…at a small quality cost: FID(ActVAR) ≤ 1.07 × FID(dense) (the paper's largest relative increase, d30: +6.8 %)${tag}`,
    'd16 3.30 → 3.51, d20 2.57 → 2.72, d24 2.09 → 2.20, d30 1.92 → 2.05', rows, densePseudo, I.main,
    (d, a) => 1.07 * d.metrics.fid - a.metrics.fid, '1.07·FID(dense) − FID(ActVAR)'));
  out.push(paired('Table 1', init, `…and IS(ActVAR) ≥ 0.96 × IS(dense) (the paper's largest relative drop, d20: −4.0 %)${tag}`,
    'd16 274.4 → 273.5, d20 302.6 → 290.4', rows, densePseudo, I.main,
    (d, a) => a.metrics.isMean - 0.96 * d.metrics.isMean, 'IS(ActVAR) − 0.96·IS(dense)'));
  out.push(paired('Table 1 (time)', init, `The FLOPs saving is a wall-clock saving: ActVAR (75,75;75) takes fewer seconds per image than dense at batch ${main?.batchN ?? 'N'}${tag}`,
    'the paper reports no times', rows, densePseudo, I.main,
    (d, a) => 1 - a.latency.batchN.secondsPerImage / d.latency.batchN.secondsPerImage, 'time saving', pc));
  out.push(paired('Table 1 (time)', init, `…and at batch 1${tag}`, 'the paper reports no times', rows, densePseudo, I.main,
    (d, a) => 1 - a.latency.batch1.secondsPerImage / d.latency.batch1.secondsPerImage, 'time saving', pc));
  // ---- Table 2: FID rises with the FLOPs saving over the five rates (Spearman per seed)
  {
    const rs = I.rates.map((id) => rows.get(id));
    let claim: Claim;
    if (rs.some((r) => !r)) claim = { source: 'Table 2', init, text: '', paper: '', ours: 'not run', verdict: verdictOf([]) };
    else {
      const seeds = rs[0]!.runs.map((r) => r.seed).filter((s) => rs.every((r) => r!.runs.some((q) => q.seed === s)) && dense.has(s));
      const rhos = seeds.map((s) => {
        const recs = rs.map((r) => r!.runs.find((q) => q.seed === s)!);
        const sav = recs.map((q) => 1 - q.gflopsPerImage / dense.get(s)!.gflopsPerImage);
        return spearman(sav, recs.map((q) => q.metrics.fid));
      });
      claim = { source: 'Table 2', init, text: '', paper: '', ours: `Spearman ρ(FLOPs saving, FID) = ${fmtAgg(aggregate(rhos), (v) => v.toFixed(2))}`, verdict: verdictOf(rhos, (v) => v.toFixed(2)) };
    }
    claim.text = `Lower activation rates trade quality for FLOPs: over the five rates of Table 2, FID rises with the FLOPs saving (Spearman ρ > 0; the paper's order is perfectly monotone, ρ = 1)${tag}`;
    claim.paper = 'savings 43.2 / 39.9 / 32.8 / 28.2 / 21.2 %, FID 3.30 / 3.21 / 2.92 / 2.89 / 2.72';
    out.push(claim);
  }
  // ---- Table 3
  out.push(paired('Table 3', init, `Without dynamic weight activation (γ = 100 %) fewer FLOPs are saved${tag}`, '14.2 % vs 21.2 %', rows, I.woDW, I.main,
    (w, f) => w.gflopsPerImage / f.gflopsPerImage - 1, 'extra FLOPs of w/o DW over full', pc, true));
  out.push(paired('Table 3', init, `Without adaptive token activation (token rates 100 %) fewer FLOPs are saved${tag}`, '9.4 % vs 21.2 %', rows, I.woAT, I.main,
    (w, f) => w.gflopsPerImage / f.gflopsPerImage - 1, 'extra FLOPs of w/o AT over full', pc, true));
  out.push(paired('Table 3', init, `Removing DW does not worsen FID (the paper: slightly better without it)${tag}`, 'FID 2.67 (w/o DW) vs 2.72', rows, I.main, I.woDW,
    (f, w) => f.metrics.fid - w.metrics.fid, 'FID(full) − FID(w/o DW)'));
  out.push(paired('Table 3', init, `Removing AT does not worsen FID (the paper: slightly better without it)${tag}`, 'FID 2.70 (w/o AT) vs 2.72', rows, I.main, I.woAT,
    (f, w) => f.metrics.fid - w.metrics.fid, 'FID(full) − FID(w/o AT)'));
  // ---- Tables 4, 5
  out.push(paired('Table 4', init, `Dynamic token activation beats fixed token pruning on FID${tag}`, 'FID 2.72 vs 3.83', rows, I.fixed, I.main,
    (x, a) => x.metrics.fid - a.metrics.fid, 'FID(fixed) − FID(ActVAR)'));
  out.push(paired('Table 4', init, `…and on IS${tag}`, 'IS 290.4 vs 242.4', rows, I.fixed, I.main, (x, a) => a.metrics.isMean - x.metrics.isMean, 'IS(ActVAR) − IS(fixed)'));
  out.push(paired('Table 5', init, `Dynamic weight activation beats static weight pruning on FID${tag}`, 'FID 2.72 vs 3.04', rows, I.static, I.main,
    (x, a) => x.metrics.fid - a.metrics.fid, 'FID(static) − FID(ActVAR)'));
  out.push(paired('Table 5', init, `…and on IS${tag}`, 'IS 290.4 vs 274.2', rows, I.static, I.main, (x, a) => a.metrics.isMean - x.metrics.isMean, 'IS(ActVAR) − IS(static)'));
  // ---- Table 6
  out.push(paired('Table 6', init, `The last two scales save more FLOPs than the two before them${tag}`, '21.2 % vs 8.1 %', rows, I.before, I.main,
    (b, l) => b.gflopsPerImage / l.gflopsPerImage - 1, 'extra FLOPs of the earlier scales', pc, true));
  out.push(paired('Table 6', init, `…and keep a better FID${tag}`, 'FID 2.72 vs 2.82', rows, I.before, I.main,
    (b, l) => b.metrics.fid - l.metrics.fid, 'FID(earlier) − FID(last two)'));
  // ---- Fig. 9
  const e = (n: number): string => I.experts[EXPERT_COUNTS.indexOf(n)];
  out.push(paired('Fig. 9', init, `16 experts give a better FID than 4${tag}`, '16 is the best of 4 / 8 / 16 / 32 (plot only, no numbers in the text)', rows, e(4), e(16),
    (a, b) => a.metrics.fid - b.metrics.fid, 'FID(4) − FID(16)'));
  out.push(paired('Fig. 9', init, `16 experts give a better FID than 32${tag}`, 'as above', rows, e(32), e(16),
    (a, b) => a.metrics.fid - b.metrics.fid, 'FID(32) − FID(16)'));
  // ---- KV policy (the paper is silent): reported as a comparison, not a claim
  if (rows.has(I.kvAll)) {
    out.push(paired('KV cache (no claim)', init, `Keeping every token's K/V (policy 'all') gives a better FID than only the kept tokens' (policy 'kept')${tag}`,
      'the paper is silent', rows, I.main, I.kvAll, (k, a) => k.metrics.fid - a.metrics.fid, "FID(kept) − FID(all)"));
  }
  return out;
}

/** Whether N and the seeds resolve the claims decided by sampled quantities: which are, which are inside the seed spread. */
export interface Resolution { noisy: Claim[]; inside: Claim[]; fidStd: number[]; n: number }

export function resolutionOf(a: Analysis): Resolution | null {
  const noisy = a.claims.filter((c) => c.verdict.n >= 2 && Number.isFinite(c.verdict.half) && c.verdict.half > 0);
  if (!noisy.length) return null;
  return {
    noisy, inside: noisy.filter((c) => c.verdict.kind === 'inconclusive'),
    fidStd: [...a.rows.values()].filter((r) => r.fid.n >= 2).map((r) => r.fid.std).sort((x, y) => x - y),
    n: a.records[0]?.sizes.n ?? NaN,
  };
}

/** One sentence on the resolution, shared by the markdown and the page. */
export function resolutionSentence(r: Resolution, seeds: number): string {
  const f = r.fidStd;
  return `${r.noisy.length - r.inside.length} of the ${r.noisy.length} claims decided by sampled quantities (FID, IS, seconds, rank correlations) are resolved at N = ${r.n} with ${seeds} seeds: ` +
    'their 95 % interval excludes 0. ' + (f.length ? `The seed std of FID (classifier) per setting is ${f[0].toFixed(2)}–${f[f.length - 1].toFixed(2)} (median ${f[f.length >> 1].toFixed(2)}). ` : '') +
    (r.inside.length ? `${r.inside.length} are inside the seed spread: at this N a larger sample or more seeds would be needed to decide them, and this report does not.` : 'None is inside the seed spread.');
}
