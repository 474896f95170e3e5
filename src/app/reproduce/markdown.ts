/**
 * docs/REPRODUCTION.md (and reports/<name>/REPRODUCTION.md): every table in the paper's layout, filled
 * from the run records only (analysis.ts), with the paper's number beside ours and one verdict per claim.
 */
import { pm, type Agg } from './stats.js';
import { ids, PAPER, resolutionOf, resolutionSentence, type Analysis, type Row } from './analysis.js';
import { FULL_SIZES, planSettings, type InitKind, type PlanSizes, type Setting } from './plan.js';
import type { RunRecord } from './run.js';

export interface ReportMeta {
  /** The command that produced the records. */
  command: string;
  /** Where the HTML page and the records are, relative to the repository root. */
  outDir: string;
  /** Wall seconds of the reproduce invocations that ran something (invocations.jsonl; else the runs' own totals). */
  wallSeconds: number;
  /** How many invocations (1 = one uninterrupted run). */
  invocations?: number;
  /** Runs outside every recorded invocation, counted in wallSeconds by their own totals. */
  uncoveredRuns?: number;
  /** Process CPU seconds of those invocations (all threads), or null. */
  cpuSeconds?: number | null;
  /** Screenshot of the page, relative to the repository root (or null). */
  screenshot: string | null;
}

/** How the seconds were taken, and what that means for the time verdicts (markdown and page). */
export const TIMING_NOTE = 'Each run is timed on its own, one after another in one process: the time verdicts compare runs made minutes apart and carry the drift of the machine between them ' +
  '(docs/BENCHMARKS.md, "The seconds of the reproduction report", measures it; alternating timings are the ones to trust for speed).';

const pct = (a: Agg): string => pm(a, 1, 100) + (a.n ? ' %' : '');

function table(header: string[], rows: string[][]): string {
  const line = (c: string[]): string => `| ${c.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const COLS = (b: number): string[] => ['setting', 'FLOPs saving', 'FID (classifier)', 'IS (classifier)', 'precision', 'recall', 'class acc.',
  's/img @1', 'img/s @1', `s/img @${b}`, `img/s @${b}`];

function cells(r: Row): string[] {
  return [r.setting.label, r.setting.actvar ? pct(r.flopsSaving) : '0 (reference)', pm(r.fid, 2), pm(r.isMean, 2), pm(r.precision, 3), pm(r.recall, 3),
    pm(r.classAccuracy, 3), pm(r.b1Seconds, 4), pm(r.b1Rate, 1), pm(r.bNSeconds, 4), pm(r.bNRate, 1)];
}

function settingTable(a: Analysis, list: { id: string; paper: string }[]): string {
  const present = list.filter((x) => a.rows.has(x.id));
  if (!present.length) return '_not run_';
  const b = a.rows.get(present[0].id)!.batchN;
  return table([...COLS(b), 'paper (ImageNet 256, Inception)'], present.map((x) => [...cells(a.rows.get(x.id)!), x.paper]));
}

const f2 = (v: number): string => v.toFixed(2);
const pp = (s: number, fid: number, is: number): string => `${(s * 100).toFixed(1)} %, FID ${f2(fid)}, IS ${is.toFixed(1)}`;

function sections(a: Analysis, init: InitKind): string[] {
  const I = ids(init), P = PAPER, out: string[] = [];
  const t1 = P.table1;
  out.push(`### Table 1 — ActVAR vs the dense VAR (${init})`, '',
    settingTable(a, [
      { id: 'dense', paper: `VAR-d16: FID ${f2(t1.dense.d16.fid)}, IS ${t1.dense.d16.is}, P ${t1.dense.d16.pre}, R ${t1.dense.d16.rec}; d20: FID ${f2(t1.dense.d20.fid)}, IS ${t1.dense.d20.is}` },
      { id: I.main, paper: `ActVAR-d16: ${(t1.actvar.d16.saving * 100).toFixed(1)} %, FID ${f2(t1.actvar.d16.fid)}, IS ${t1.actvar.d16.is}, P ${t1.actvar.d16.pre}, R ${t1.actvar.d16.rec}; d20: ${(t1.actvar.d20.saving * 100).toFixed(1)} %, FID ${f2(t1.actvar.d20.fid)}, IS ${t1.actvar.d20.is}` },
    ]), '');
  out.push(`### Table 2 — activation rates (α, β; γ) (${init})`, '',
    settingTable(a, I.rates.map((id, k) => ({ id, paper: pp(...P.table2[k]) }))), '');
  out.push(`### Table 3 — components (${init})`, '',
    settingTable(a, [{ id: I.woDW, paper: 'w/o DW: ' + pp(...P.table3.woDW) }, { id: I.woAT, paper: 'w/o AT: ' + pp(...P.table3.woAT) }, { id: I.main, paper: 'w/ DW & AT: ' + pp(...P.table3.full) }]), '');
  out.push(`### Table 4 — dynamic token activation vs fixed token pruning (${init})`, '',
    settingTable(a, [{ id: I.fixed, paper: `FID ${f2(P.table4.fixed[0])}, IS ${P.table4.fixed[1]}` }, { id: I.main, paper: `FID ${f2(P.table4.dynamic[0])}, IS ${P.table4.dynamic[1]}` }]), '');
  out.push(`### Table 5 — dynamic weight activation vs static weight pruning (${init})`, '',
    settingTable(a, [{ id: I.static, paper: `FID ${f2(P.table5.static[0])}, IS ${P.table5.static[1]}` }, { id: I.main, paper: `FID ${f2(P.table5.dynamic[0])}, IS ${P.table5.dynamic[1]}` }]), '');
  out.push(`### Table 6 — activation scales (${init})`, '',
    settingTable(a, [{ id: I.before, paper: 'scales (7, 8): ' + pp(...P.table6.before) }, { id: I.main, paper: 'scales (9, 10): ' + pp(...P.table6.last) }]), '');
  out.push(`### Fig. 9 — number of experts (${init})`, '',
    settingTable(a, I.experts.map((id, k) => ({ id, paper: k === 2 ? 'best of the four (plot)' : 'worse than 16 (plot)' }))), '');
  if (a.rows.has(I.kvAll)) {
    out.push(`### KV-cache policy (${init}; the paper is silent)`, '',
      settingTable(a, [{ id: I.main, paper: '–' }, { id: I.kvAll, paper: '–' }]), '');
  }
  return out;
}

/**
 * What a plan of `target` sizes would take, extrapolated from measured runs (the first seed of every
 * setting; settings of the target plan that were not run here are not counted): per run, setup
 * (calibration; for distilled rows the distillation, scaled by the trained images) + metric pass × N ratio
 * + latency × image ratio, × seeds. `wall`: at the load these runs saw; `cpu`: process CPU seconds scaled
 * the same way (all threads; an idle 2-core machine needs at least cpu/2 of wall time).
 */
export function estimateSeconds(records: RunRecord[], target: PlanSizes, targetSettings: Setting[]): { wall: number; cpu: number; runs: number; proxied: number } {
  const first = new Map<string, RunRecord>();
  for (const r of records) if (!first.has(r.setting.id) || r.seed < first.get(r.setting.id)!.seed) first.set(r.setting.id, r);
  let wall = 0, cpu = 0, runs = 0, proxied = 0;
  for (const st of targetSettings) {
    // a setting not run here is estimated by the main ActVAR setting of its init (same distillation budget)
    let r = first.get(st.id);
    if (!r) { r = first.get(st.actvar ? ids(st.actvar.init).main : 'dense'); if (r) proxied++; }
    if (!r) continue;
    const d = r.sizes.distill, td = target.distill;
    const setupScale = r.setting.actvar?.init === 'distilled' && d && td
      ? ((td.stage1Steps + td.stage2Steps) * td.batchSize) / ((d.stage1Steps + d.stage2Steps) * d.batchSize) : 1;
    const w = r.seconds.setup * setupScale + r.seconds.metricPass * (target.n / r.sizes.n) + r.seconds.latency * (target.latencyImages / r.sizes.latencyImages);
    wall += w;
    cpu += typeof r.seconds.cpu === 'number' && r.seconds.total > 0 ? r.seconds.cpu * (w / r.seconds.total) : NaN;
    runs++;
  }
  return { wall: wall * target.seeds, cpu: cpu * target.seeds, runs: runs * target.seeds, proxied: proxied * target.seeds };
}

/** Distillation budget and held-out / test KL to the dense teacher before → after, per distilled run. */
function distillTable(a: Analysis): string | null {
  const rows: string[][] = [];
  for (const r of a.records) {
    const i = r.init as Record<string, any> | null;
    if (!i || i.kind !== 'distilled') continue;
    const kl = (x: any): string => (x && typeof x.klToDense === 'number' ? x.klToDense.toFixed(4) : '–');
    rows.push([r.setting.label, String(r.seed), `${i.stage1Steps} + ${i.stage2Steps} steps × batch ${i.batchSize}, lr ${Number(i.lr).toExponential(2)}${typeof i.lr2 === 'number' && i.lr2 !== i.lr ? ` / ${Number(i.lr2).toExponential(2)}` : ''}${i.schedule ? ` (${i.schedule})` : ''}`,
      `${i.trainImages} (${i.holdout} held out)`, `${kl(i.before?.val)} → ${kl(i.after?.val)}`, `${kl(i.before?.test)} → ${kl(i.after?.test)}`,
      typeof i.distillSeconds === 'number' ? `${(i.distillSeconds / 60).toFixed(1)} min` : '–']);
  }
  return rows.length ? table(['distilled setting', 'seed', 'budget (stage 1 + stage 2)', 'training images', 'held-out KL to dense (start → end)', 'test KL to dense', 'distillation wall time'], rows) : null;
}

function loadRange(rs: RunRecord[]): string {
  const v = rs.flatMap((r) => r.load ?? []).filter((x) => Number.isFinite(x));
  return v.length ? `${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)}` : 'not recorded';
}

/** The resolution section: the sentence, then the claims inside the seed spread. */
function resolution(a: Analysis): string[] {
  const r = resolutionOf(a);
  if (!r) return [];
  const out = ['## Does N resolve the differences?', '', resolutionSentence(r, a.seeds.length), ''];
  for (const c of r.inside) out.push(`* ${c.source}: ${c.text} — ${c.verdict.why}`);
  if (r.inside.length) out.push('');
  return out;
}

export function renderMarkdown(a: Analysis, meta: ReportMeta): string {
  const r0 = a.records[0];
  const commits = [...new Set(a.records.map((r) => r.commit))];
  const machines = [...new Set(a.records.map((r) => r.machine))];
  const modes = [...new Set(a.records.map((r) => r.mode))];
  const sz = r0?.sizes;
  const lines: string[] = [];
  lines.push('# Reproducing the paper\'s experiments at small scale', '');
  lines.push(`<!-- generated by \`${meta.command}\` from ${meta.outDir}/runs/*.json — do not edit by hand -->`, '');
  lines.push('The paper tests ActVAR on ImageNet 256 with VAR-d16…d30 and reports single runs without intervals or times. ' +
    'Here every claim of its Tables 1–6 and Fig. 9 is rerun on the shipped Fashion-MNIST models (docs/MODELS.md: VAR depth 4, width 128, ' +
    '6 scales 1,2,3,4,6,8; the activated scales are the last two, 6×6 and 8×8, and "the two before" are 3×3 and 4×4), ' +
    'with seeds, mean ± std over them, and measured seconds. Every number below comes from the JSON files of the command; nothing is typed by hand.', '');
  lines.push('## How these numbers were made', '');
  lines.push(`* Command: \`${meta.command}\` (mode ${modes.join(', ')}); page with plots: \`${meta.outDir}/index.html\`` + (meta.screenshot ? ` (screenshot: \`${meta.screenshot}\`)` : '') +
    '. Rerunning a command in the same `--out` folder resumes it (finished runs are skipped); to rerun from scratch give a new `--out`.');
  lines.push(`* Commit${commits.length > 1 ? 's' : ''}: ${commits.map((c) => `\`${c}\``).join(', ')}; machine: ${machines.join('; ')}; 1-minute load average during the runs ${loadRange(a.records)} (other jobs share the machine).`);
  if (sz) {
    lines.push(`* Sizes: N = ${sz.n} generated images per run (class i mod 10, image i seeded by imageSeed(seed, i): the same images in every setting), ` +
      `batch ${sz.batch}; seeds ${a.seeds.join(', ')}; training-free gates calibrated on ${sz.calib} dense generations per run; batch-1 latency = median of ${sz.latencyImages} single images after one warm-up, ` +
      `batch-${sz.batch} latency = median time of the metric pass's full batches / ${sz.batch} (sampling + VQVAE decode; not the feature extraction).`);
  }
  lines.push(`* Quality: FID / IS / precision / recall (k = 3) computed on the **features of the shipped Fashion-MNIST classifier** (sha256 ${r0?.metrics.extractorSha256.slice(0, 16) ?? '–'}…) against ${r0?.metrics.ref ?? '–'} — ` +
    '"FID (classifier)" is **not** the Inception FID of the paper; IS is computed on the same classifier\'s 10 logits (at most 10). Compare numbers only at equal N (docs/EVALUATION.md).');
  lines.push('* FLOPs saving: 1 − (transformer FLOPs per image)/(dense FLOPs per image, same seed), by the exact FLOPs counter (src/tensor/flops.ts, CFG on).');
  lines.push(`* Wall time of the command: ${(meta.wallSeconds / 60).toFixed(1)} min` + (meta.invocations ? ` over ${meta.invocations} invocation(s) (loading, reference features, runs, report; \`invocations.jsonl\`)` : ' (the runs\' own totals)') +
    (meta.uncoveredRuns ? `, plus the own totals of ${meta.uncoveredRuns} runs from an invocation that was stopped before it recorded itself` : '') +
    (meta.cpuSeconds ? `, ${(meta.cpuSeconds / 60).toFixed(1)} CPU-minutes (all threads; on an otherwise idle 2-core machine the wall time would be about half of that or a little more)` : '') +
    '; the machine is shared, so seconds are noisy — every run\'s CPU seconds are in its JSON. ' +
    TIMING_NOTE);
  lines.push('* Verdicts: per-seed paired differences, oriented so that > 0 means "as the paper claims"; **holds** when the 95 % t-interval of their mean is above 0, ' +
    '**does not hold at this scale** when it is below 0, **inconclusive** when it contains 0 (the difference is inside the seed spread) or when there is only one seed.', '');
  if (a.records.some((r) => r.mode !== 'full')) {
    const est = estimateSeconds(a.records, FULL_SIZES, planSettings({ inits: ['training-free', 'distilled'], kvAll: true, distilledSettings: FULL_SIZES.distilledSettings })), fd = FULL_SIZES.distill;
    lines.push(`* **The full run** is \`actvar reproduce --out reports/full --doc docs/REPRODUCTION.md\` (or \`npm run reproduce -- --out reports/full --doc docs/REPRODUCTION.md\`): ` +
      `${FULL_SIZES.seeds} seeds, N = ${FULL_SIZES.n}, batch-1 latency on ${FULL_SIZES.latencyImages} images, every setting training-free and ActVAR (75,75;75) and the two baselines also distilled ` +
      `(${fd.stage1Steps} + ${fd.stage2Steps} steps of batch ${fd.batchSize} on ${fd.trainLimit} training images per distillation). ` +
      `Extrapolated from the runs below (setup, distillation scaled by its images, metric pass × ${FULL_SIZES.n}/${sz?.n ?? '?'}, latency; × ${FULL_SIZES.seeds} seeds; ` +
      `the ${est.proxied} runs of settings not run here are costed as the main ActVAR run of their kind) for all ${est.runs} runs: ` +
      `**${(est.wall / 3600).toFixed(1)} hours of wall time at the load these runs saw** (1-minute load average ${loadRange(a.records)}), ` +
      (Number.isFinite(est.cpu) ? `**${(est.cpu / 3600).toFixed(1)} CPU-hours**, i.e. at least ${(est.cpu / 7200).toFixed(1)} hours on an idle 2-core machine` : 'CPU time not recorded') +
      '; `--distill-all` distils every setting as well (hours more), `--no-distill` skips the distillations. ' +
      'It resumes where it stopped when rerun. Then `node scripts/check-report.mjs reports/full/index.html docs/reproduction.png` checks the page and takes the screenshot.');
  }
  lines.push('', '## Verdicts, one per claim', '');
  lines.push(table(['source', 'claim', 'paper', 'ours', 'verdict'],
    a.claims.map((c) => [c.source, c.text, c.paper, c.ours, `**${c.verdict.kind}** — ${c.verdict.why}`])), '');
  lines.push(...resolution(a));
  const dt = distillTable(a);
  if (dt) lines.push('## Distillation of the distilled rows', '', 'The same recipe for ActVAR and the baselines (src/train/distill.ts: stage 1 routers + selectors from the training-free start, stage 2 the VAR with the gates fixed; a baseline takes over the token / expert choice from stage 2 on). KL: mean per-token KL of the ActVAR\'s token distributions to the dense teacher\'s, teacher-forced.', '', dt, '');
  lines.push('## Tables in the paper\'s layout', '');
  lines.push('Columns: FLOPs saving vs dense; FID, IS, precision, recall on classifier features; class accuracy of the samples (the classifier\'s prediction = the class asked for); ' +
    'seconds per image and images per second at batch 1 and at the metric batch. Mean ± std over seeds (no ± with one seed).', '');
  for (const init of a.inits) lines.push(...sections(a, init));
  lines.push('## Settings', '');
  lines.push('* Static weight pruning: the same γ, one fixed set of K_w = round(γ·N) experts per FFN for every token, the experts with the largest mean output norm ' +
    '‖eₑ(h)‖ over the FFN inputs of dense calibration generations at the activated scales (mean activation magnitude; src/actvar/baselines.ts).');
  lines.push('* Fixed token pruning: the same K_t per scale; block 0 selects with its gate, every later block of that scale reuses that selection (paper §4.3.3).');
  lines.push('* w/o DW: γ = 100 % (all experts; the router still runs). w/o AT: token rates 100 % (all tokens; the selector still runs).');
  lines.push('* Training-free gates: the ridge fits of src/actvar/init.ts on the calibration generations (docs/ACTVAR.md). Distilled rows, when present: the two-stage distillation of issue 12.', '');
  return lines.join('\n') + '\n';
}
