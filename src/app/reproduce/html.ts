/**
 * reports/<name>/index.html: one self-contained page (no scripts, no external files): the verdicts,
 * the tables, SVG plots (svg.ts) — FID vs FLOPs saving with the Pareto front of the rates and the
 * baselines as separate markers, FID vs measured seconds per image, the expert-count curve with error
 * bars — the sample grids of every setting (the same image seeds everywhere) and the activation maps
 * (Fig. 5/6 analogues), PNGs embedded as data URIs.
 */
import { esc, plotSvg, paretoFront, type Point, type Series } from './svg.js';
import { ids, resolutionOf, resolutionSentence, type Analysis, type Row } from './analysis.js';
import { EXPERT_COUNTS, type InitKind } from './plan.js';
import { TIMING_NOTE, type ReportMeta } from './markdown.js';
import { pm } from './stats.js';

/** PNG bytes of a run file (relative to the out dir) → data URI; null when missing. */
export type ImageSource = (relPath: string) => Uint8Array | null;

const COLORS = { rates: '#1f77b4', main: '#d62728', fixed: '#ff7f0e', static: '#9467bd', woDW: '#2ca02c', woAT: '#17becf', before: '#8c564b', experts: '#e377c2', dense: '#333333', kv: '#bcbd22' };

function pt(r: Row | undefined, x: (r: Row) => { mean: number; std: number; n: number }, label?: string): Point[] {
  if (!r) return [];
  const xa = x(r);
  return [{ x: xa.mean, y: r.fid.mean, yerr: r.fid.n > 1 ? r.fid.std : undefined, xerr: xa.n > 1 ? xa.std : undefined, label }];
}

function fidVsFlops(a: Analysis, init: InitKind): string {
  const I = ids(init), row = (id: string): Row | undefined => a.rows.get(id);
  const sav = (r: Row) => ({ mean: r.flopsSaving.mean * 100, std: r.flopsSaving.std * 100, n: r.flopsSaving.n });
  const rates = I.rates.flatMap((id) => pt(row(id), sav, row(id)?.setting.label.match(/\(.*?\)/)?.[0]));
  const front = paretoFront(rates).map((i) => rates[i]);
  const series: Series[] = [
    { name: 'Table 2 rates', points: rates, color: COLORS.rates, marker: 'circle' },
    { name: 'Pareto front of the rates', points: front, color: COLORS.rates, line: true, dashed: true, marker: 'circle' },
    { name: 'dense VAR', points: pt(row('dense'), () => ({ mean: 0, std: 0, n: 1 })), color: COLORS.dense, marker: 'square' },
    { name: 'fixed token pruning', points: pt(row(I.fixed), sav), color: COLORS.fixed, marker: 'triangle' },
    { name: 'static weight pruning', points: pt(row(I.static), sav), color: COLORS.static, marker: 'diamond' },
    { name: 'w/o DW (γ = 100 %)', points: pt(row(I.woDW), sav), color: COLORS.woDW, marker: 'square' },
    { name: 'w/o AT (tokens 100 %)', points: pt(row(I.woAT), sav), color: COLORS.woAT, marker: 'square' },
    { name: 'scales before the last two', points: pt(row(I.before), sav), color: COLORS.before, marker: 'cross' },
  ];
  if (row(I.kvAll)) series.push({ name: "KV policy 'all'", points: pt(row(I.kvAll), sav), color: COLORS.kv, marker: 'diamond' });
  return plotSvg({ title: `FID vs FLOPs saving (${init})`, xLabel: 'transformer FLOPs saving vs dense (%)', yLabel: 'FID (classifier features)', series, yTickFormat: (v) => v.toFixed(1) });
}

function fidVsLatency(a: Analysis, init: InitKind, batch1: boolean): string {
  const I = ids(init), row = (id: string): Row | undefined => a.rows.get(id);
  const lat = (r: Row) => { const s = batch1 ? r.b1Seconds : r.bNSeconds; return { mean: s.mean * 1e3, std: s.std * 1e3, n: s.n }; };
  const b = [...a.rows.values()][0]?.batchN ?? 0;
  const series: Series[] = [
    { name: 'dense VAR', points: pt(row('dense'), lat), color: COLORS.dense, marker: 'square' },
    { name: 'Table 2 rates', points: I.rates.flatMap((id) => pt(row(id), lat, row(id)?.setting.label.match(/\(.*?\)/)?.[0])), color: COLORS.rates, marker: 'circle' },
    { name: 'fixed token pruning', points: pt(row(I.fixed), lat), color: COLORS.fixed, marker: 'triangle' },
    { name: 'static weight pruning', points: pt(row(I.static), lat), color: COLORS.static, marker: 'diamond' },
    { name: 'w/o DW', points: pt(row(I.woDW), lat), color: COLORS.woDW, marker: 'square' },
    { name: 'w/o AT', points: pt(row(I.woAT), lat), color: COLORS.woAT, marker: 'square' },
    { name: 'scales before', points: pt(row(I.before), lat), color: COLORS.before, marker: 'cross' },
    { name: 'experts 4/8/32', points: I.experts.filter((_, k) => EXPERT_COUNTS[k] !== 16).flatMap((id, k) => pt(row(id), lat, `${[4, 8, 32][k]}`)), color: COLORS.experts, marker: 'circle' },
  ];
  return plotSvg({ title: `FID vs measured latency at batch ${batch1 ? 1 : b} (${init})`, xLabel: `milliseconds per image at batch ${batch1 ? 1 : b} (median, sampling + decode)`, yLabel: 'FID (classifier features)', series, yTickFormat: (v) => v.toFixed(1) });
}

function expertsCurve(a: Analysis, init: InitKind): string {
  const I = ids(init);
  const pts: Point[] = I.experts.flatMap((id, k) => {
    const r = a.rows.get(id);
    return r ? [{ x: EXPERT_COUNTS[k], y: r.fid.mean, yerr: r.fid.n > 1 ? r.fid.std : undefined, label: `${EXPERT_COUNTS[k]}` }] : [];
  });
  return plotSvg({
    title: `Fig. 9 analogue: FID vs number of experts (${init}, mean ± std over seeds)`, xLabel: 'experts per FFN (log scale)', yLabel: 'FID (classifier features)',
    series: [{ name: 'ActVAR (75,75;75)', points: pts, color: COLORS.experts, line: true, marker: 'circle' }], xLog2: true, xTicks: [...EXPERT_COUNTS], yTickFormat: (v) => v.toFixed(1),
  });
}

const dataUri = (b: Uint8Array): string => `data:image/png;base64,${Buffer.from(b).toString('base64')}`;

function table(a: Analysis): string {
  const head = ['setting', 'FLOPs saving', 'FID', 'IS', 'precision', 'recall', 'class acc.', 's/img @1', 'img/s @1', 's/img @B', 'img/s @B', 'seeds'];
  const rows = [...a.rows.values()].map((r) => [r.setting.label, r.setting.actvar ? `${pm(r.flopsSaving, 1, 100)} %` : '–', pm(r.fid, 2), pm(r.isMean, 2), pm(r.precision, 3), pm(r.recall, 3),
    pm(r.classAccuracy, 3), pm(r.b1Seconds, 4), pm(r.b1Rate, 1), pm(r.bNSeconds, 4), pm(r.bNRate, 1), String(r.runs.length)]);
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((c) => `<tr>${c.map((x) => `<td>${esc(x)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

export function renderHtml(a: Analysis, meta: ReportMeta, image: ImageSource): string {
  const commits = [...new Set(a.records.map((r) => r.commit))].join(', ');
  const machines = [...new Set(a.records.map((r) => r.machine))].join('; ');
  const sz = a.records[0]?.sizes;
  const verdictClass = (k: string): string => (k === 'holds' ? 'ok' : k.startsWith('does not') ? 'no' : 'maybe');
  const parts: string[] = [];
  parts.push('<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8"><title>ActVAR: reproduction at small scale</title>',
    '<style>body{font-family:sans-serif;margin:24px;max-width:1400px;color:#222}table{border-collapse:collapse;font-size:12px;margin:8px 0 20px}' +
    'td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f2f2f2}.ok{background:#e3f4e3}.no{background:#fbe3e3}.maybe{background:#fff6d9}' +
    '.plots{display:flex;flex-wrap:wrap;gap:16px}.grids{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0}figcaption{font-size:12px;max-width:340px}' +
    'img.px{image-rendering:pixelated}img.map{max-width:640px;height:auto}small{color:#555}</style></head><body>');
  parts.push('<h1>ActVAR — the paper\'s claims rerun at small scale</h1>');
  parts.push(`<p>Shipped Fashion-MNIST VAR (depth 4, width 128, scales 1,2,3,4,6,8). Command <code>${esc(meta.command)}</code>; commit ${esc(commits)}; ${esc(machines)}. ` +
    (sz ? `N = ${sz.n} images per run, seeds ${a.seeds.join(', ')}, batch ${sz.batch}. ` : '') +
    '<b>FID / IS / precision / recall use the shipped Fashion-MNIST classifier\'s features, not Inception</b>: compare them with each other, not with the paper\'s values. Every number and image on this page comes from the run files in <code>runs/</code>. ' + esc(TIMING_NOTE) + '</p>');
  parts.push('<h2>Verdicts</h2><table><thead><tr><th>source</th><th>claim</th><th>paper</th><th>ours</th><th>verdict</th></tr></thead><tbody>');
  for (const c of a.claims) {
    parts.push(`<tr><td>${esc(c.source)}</td><td>${esc(c.text)}</td><td>${esc(c.paper)}</td><td>${esc(c.ours)}</td><td class="${verdictClass(c.verdict.kind)}"><b>${esc(c.verdict.kind)}</b> — ${esc(c.verdict.why)}</td></tr>`);
  }
  parts.push('</tbody></table>');
  const res = resolutionOf(a);
  if (res) parts.push(`<p>${esc(resolutionSentence(res, a.seeds.length))}</p>`);
  for (const init of a.inits) {
    parts.push(`<h2>Plots (${esc(init)} gates)</h2><div class="plots">`);
    parts.push(fidVsFlops(a, init), fidVsLatency(a, init, false), fidVsLatency(a, init, true), expertsCurve(a, init));
    parts.push('</div>');
  }
  parts.push('<h2>All settings</h2><p><small>mean ± std over seeds; @B = the metric pass batch. Seconds: sampling + VQVAE decode, median.</small></p>', table(a));
  parts.push('<h2>Samples (seed 0, the same image seeds in every setting; row = 10 classes)</h2><div class="grids">');
  for (const r of a.rows.values()) {
    const rec = r.runs.find((q) => q.seed === 0) ?? r.runs[0];
    const b = rec.files.grid ? image(rec.files.grid) : null;
    if (!b) continue;
    parts.push(`<figure><img class="px" width="340" src="${dataUri(b)}" alt="${esc(r.setting.label)}"><figcaption>${esc(r.setting.label)} — FID ${pm(r.fid, 2)}</figcaption></figure>`);
  }
  parts.push('</div>');
  parts.push('<h2>Activation maps (Fig. 5 / Fig. 6 analogues, image 0, seed 0)</h2>' +
    '<p><small>Tokens: one tile per block, white = the block updated the token; the last tile is the fraction of blocks that updated each token (dark = none, yellow = all). ' +
    'Experts: every updated token coloured by its first expert; then one tile per expert with the fraction of blocks in which it ran on each token. Fixed token pruning shows the same tile in every block.</small></p><div class="grids">');
  for (const r of a.rows.values()) {
    const rec = r.runs.find((q) => q.seed === 0);
    if (!rec || !rec.files.maps.length) continue;
    if (!(rec.setting.id === ids(rec.setting.actvar!.init).main || rec.setting.actvar?.baseline)) continue;
    for (const f of rec.files.maps) {
      const b = image(f);
      if (b) parts.push(`<figure><img class="px map" src="${dataUri(b)}" alt="${esc(f)}"><figcaption>${esc(r.setting.label)}: ${esc(f.replace(/^.*_image0_/, '').replace('.png', ''))}</figcaption></figure>`);
    }
  }
  parts.push('</div></body></html>');
  return parts.join('\n') + '\n';
}
