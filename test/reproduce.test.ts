import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  planSettings, planRuns, makePlan, pendingRuns, readRuns, writeReport, runReproduce, ids, analyse,
  plotSvg, paretoFront, niceTicks, verdictOf, spearman, QUICK_SIZES, type RunRecord, type Setting,
} from '../src/app/reproduce/index.js';
import { repoRoot } from './util/fixtures.js';
import { coreWithBaseline } from '../src/app/reproduce/distill.js';
import type { DistillCore } from '../src/train/distill.js';
import type { ActVAR } from '../src/actvar/actvar.js';
import { defaultDatasetDir } from '../src/data/datasets.js';

function tmp(): string { return fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-repro-')); }

/** Minimal XML well-formedness: balanced tags, quoted attributes, no stray '<' or '&'. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!DOCTYPE[^>]*>|<!--[\s\S]*?-->/g;
  let last = 0, m: RegExpExecArray | null;
  while ((m = re.exec(xml))) {
    const between = xml.slice(last, m.index);
    assert.ok(!/[<>]/.test(between), `stray markup before ${m[0].slice(0, 40)}: '${between.slice(0, 60)}'`);
    assert.ok(!/&(?!(amp|lt|gt|quot|#\d+);)/.test(between), `unescaped & in '${between.slice(0, 60)}'`);
    last = re.lastIndex;
    if (!m[2]) continue;
    if (m[1]) assert.equal(stack.pop(), m[2], `closing </${m[2]}> does not match`);
    else if (!m[4] && !['meta', 'img', 'br'].includes(m[2])) stack.push(m[2]);
  }
  assert.ok(!/[<>]/.test(xml.slice(last)), 'stray markup at the end');
  assert.deepEqual(stack, [], 'unclosed tags');
}

/** A synthetic run record: `fid` etc. as given, everything else plausible. */
function record(setting: Setting, seed: number, fid: number, gflops: number, is = 7): RunRecord {
  const lat = (b: number, s: number) => ({ batch: b, samples: 3, secondsPerImage: s, imagesPerSecond: 1 / s, cpuSecondsPerImage: s * 1.5 });
  return {
    format: 'actvar-reproduce-run/1', id: `${setting.id}--seed${seed}`, setting, seed, mode: 'test', sizes: { ...QUICK_SIZES }, config: null, baseline: null, init: null,
    gflopsPerImage: gflops, flopsByCategory: {}, metrics: { fid, fidOffsetApplied: false, isMean: is, isStd: 0.1, precision: 0.8, recall: 0.4, nGen: 500, nRef: 10000, classAccuracy: 0.9, extractor: 'classifier', extractorSha256: 'ab'.repeat(32), ref: 'fashion-mnist:test' },
    latency: { batch1: lat(1, 0.1 * gflops / 0.5), batchN: lat(50, 0.02 * gflops / 0.5) },
    seconds: { setup: 1, metricPass: 10, latency: 1, total: 12, cpu: 20 }, files: { grid: null, maps: [] },
    commit: 'abc123', machine: 'test machine', load: [1, 2], started: '2026-01-01T00:00:00Z', finished: '2026-01-01T00:00:12Z',
  };
}

test('plan: every claim has its settings, ids are unique, runs are settings × seeds, seed-major', () => {
  const s = planSettings();
  assert.equal(s.length, 14);
  assert.equal(new Set(s.map((x) => x.id)).size, s.length);
  const I = ids('training-free');
  for (const id of [I.main, ...I.rates, I.woDW, I.woAT, I.fixed, I.static, I.before, ...I.experts]) assert.ok(s.some((x) => x.id === id), id);
  assert.ok(!s.some((x) => x.id === I.kvAll));
  const both = planSettings({ inits: ['training-free', 'distilled'], kvAll: true });
  assert.equal(both.length, 1 + 2 * 14);
  assert.ok(both.some((x) => x.id === ids('distilled').kvAll));
  const runs = planRuns(s, 3);
  assert.equal(runs.length, 42);
  assert.deepEqual(runs.slice(0, 14).map((r) => r.seed), new Array(14).fill(0));
  assert.equal(runs[14].id, 'dense--seed1');
  const quick = makePlan({ quick: true }), full = makePlan({});
  assert.equal(quick.plan.sizes.seeds, 1);
  assert.equal(full.plan.sizes.seeds, 3);
  // quick and full distil ActVAR and the two baselines (--distill-all: every setting); both have the KV-policy row
  assert.deepEqual(quick.plan.settings.filter((x) => x.actvar?.init === 'distilled').map((x) => x.id), [ids('distilled').main, ids('distilled').fixed, ids('distilled').static]);
  assert.equal(full.plan.settings.length, 15 + 3);
  assert.equal(full.runs.length, 3 * 18);
  assert.equal(makePlan({ distillAll: true }).plan.settings.length, 15 + 14);
  assert.equal(makePlan({ quick: true, distill: false }).plan.settings.length, 15);
  assert.throws(() => makePlan({ only: ['nope'] }), /unknown setting\(s\) nope/);
});

test('resume: finished runs are skipped, a missing or half-written JSON is redone', () => {
  const out = tmp();
  try {
    const { runs } = makePlan({ quick: true });
    fs.mkdirSync(path.join(out, 'runs'));
    fs.writeFileSync(path.join(out, 'runs', `${runs[0].id}.json`), JSON.stringify(record(runs[0].setting, 0, 10, 0.5)));
    fs.writeFileSync(path.join(out, 'runs', `${runs[1].id}.json`), '{"format":"actvar-reproduce-run/1","metr'); // killed while writing
    const todo = pendingRuns(out, runs);
    assert.equal(todo.length, runs.length - 1);
    assert.ok(!todo.some((r) => r.id === runs[0].id));
    assert.ok(todo.some((r) => r.id === runs[1].id));
    assert.equal(readRuns(out).length, 1);
  } finally { fs.rmSync(out, { recursive: true, force: true }); }
});

test('verdicts: t-interval over seeds, one seed is inconclusive, exact counts decide by sign', () => {
  assert.equal(verdictOf([1.0, 1.1, 0.9]).kind, 'holds');
  assert.equal(verdictOf([-1.0, -1.1, -0.9]).kind, 'does not hold at this scale');
  assert.equal(verdictOf([1, -0.8, 0.5]).kind, 'inconclusive');
  assert.equal(verdictOf([2]).kind, 'inconclusive');
  assert.equal(verdictOf([0.1], undefined, { exact: true }).kind, 'holds');
  assert.equal(verdictOf([]).kind, 'not measured');
  // mean 1, sd 1, n 3: half-width 4.303/√3 = 2.48 → inconclusive; n = 10 with the same spread: 2.262·1/√10 = 0.72 → holds
  assert.equal(verdictOf([0, 1, 2]).kind, 'inconclusive');
  assert.equal(verdictOf([0, 1, 2, 0, 1, 2, 0, 1, 2, 1]).kind, 'holds');
  assert.equal(spearman([1, 2, 3, 4], [10, 20, 30, 40]), 1);
  assert.equal(spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1);
});

test('report from fixture JSONs: every claim gets a verdict that follows the data; markdown and a well-formed page', () => {
  const out = tmp();
  try {
    const settings = planSettings();
    const I = ids('training-free');
    fs.mkdirSync(path.join(out, 'runs'));
    const noise = [0, 0.05, -0.05];
    for (let seed = 0; seed < 3; seed++) {
      for (const s of settings) {
        const a = s.actvar;
        const gf = !a ? 0.5 : a.expertRate === 1 ? 0.42 : a.tokenRates[0] === 1 ? 0.45 : a.scales === 'before' ? 0.48 : 0.5 * (1 - 0.6 * (1 - a.tokenRates[0] * a.expertRate));
        let fid = 10 + (0.5 - gf) * 40;                 // quality falls with the saving
        if (s.id === I.fixed) fid += 5;                  // ActVAR beats fixed tokens
        if (s.id === I.static) fid -= 3;                 // static pruning beats ActVAR here
        if (s.id === I.experts[3]) fid += [2, -2.5, 0.4][seed]; // 32 experts: inside the spread
        fs.writeFileSync(path.join(out, 'runs', `${s.id}--seed${seed}.json`), JSON.stringify(record(s, seed, fid + noise[seed], gf)));
      }
    }
    const { analysis, files } = writeReport({ out, command: 'actvar reproduce --out X', doc: path.join(out, 'doc.md') });
    const byText = (re: RegExp) => analysis.claims.find((c) => re.test(c.text))!;
    assert.equal(byText(/beats fixed token pruning on FID/).verdict.kind, 'holds');
    assert.equal(byText(/beats static weight pruning on FID/).verdict.kind, 'does not hold at this scale');
    assert.equal(byText(/better FID than 32/).verdict.kind, 'inconclusive');
    assert.equal(byText(/over the five rates/).verdict.kind, 'holds');
    assert.equal(byText(/last two scales save more FLOPs/).verdict.kind, 'holds');
    assert.equal(byText(/Without dynamic weight activation/).verdict.kind, 'holds');
    assert.ok(analysis.claims.length >= 18 && analysis.claims.every((c) => c.verdict.kind !== 'not measured'));
    const md = fs.readFileSync(files[0], 'utf8');
    for (const t of ['Table 1', 'Table 2', 'Table 3', 'Table 4', 'Table 5', 'Table 6', 'Fig. 9']) assert.ok(md.includes(`### ${t}`), t);
    assert.ok(md.includes('not** the Inception FID'));
    // the claims inside the seed spread are named under "Does N resolve the differences?"
    const res = md.slice(md.indexOf('## Does N resolve the differences?'), md.indexOf('## Tables in the paper'));
    assert.match(res, /are resolved at N = \d+ with 3 seeds/);
    assert.match(res, /\* Fig\. 9: 16 experts give a better FID than 32 .*inside the seed spread/);
    assert.ok(!res.includes('beats fixed token pruning on FID'), 'a resolved claim is not listed');
    assert.equal(fs.readFileSync(path.join(out, 'doc.md'), 'utf8'), md);
    // mean ± std of the fixed-token FID over the three seeds, as printed
    const fixed = analysis.rows.get(I.fixed)!.fid;
    assert.ok(md.includes(`${fixed.mean.toFixed(2)} ± ${fixed.std.toFixed(2)}`));
    const html = fs.readFileSync(files[1], 'utf8');
    assert.equal((html.match(/<svg /g) ?? []).length, 4);
    assertWellFormed(html);
    // wall time: recorded invocations, plus the own totals of runs no recorded invocation covers (42 runs × 12 s, 20 CPU-s)
    const inv = (started: string, seconds: number, cpuSeconds: number) => JSON.stringify({ started, seconds, cpuSeconds, ran: 1, commit: 'c', command: 'actvar reproduce --out X' }) + '\n';
    fs.writeFileSync(path.join(out, 'invocations.jsonl'), inv('2026-01-02T00:00:00Z', 600, 900));
    const md2 = fs.readFileSync(writeReport({ out, command: 'x' }).files[0], 'utf8');
    assert.match(md2, /Wall time of the command: 18\.4 min over 1 invocation\(s\).*plus the own totals of 42 runs.*, 29\.0 CPU-minutes/);
    fs.writeFileSync(path.join(out, 'invocations.jsonl'), inv('2025-12-31T23:59:00Z', 600, 900));
    const md3 = fs.readFileSync(writeReport({ out, command: 'x' }).files[0], 'utf8');
    assert.match(md3, /Wall time of the command: 10\.0 min over 1 invocation\(s\).*, 15\.0 CPU-minutes/);
    assert.ok(!md3.includes('plus the own totals'));
  } finally { fs.rmSync(out, { recursive: true, force: true }); }
});

test('SVG: well-formed, escaped, error bars and the Pareto front', () => {
  const svg = plotSvg({
    title: 'a < b & "c"', xLabel: 'x', yLabel: 'y',
    series: [{ name: 'r&d', color: '#123', points: [{ x: 1, y: 2, yerr: 0.5, label: '<1>' }, { x: 2, y: 1 }, { x: NaN, y: 3 }], line: true }],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes('a &lt; b &amp; &quot;c&quot;') && svg.includes('&lt;1&gt;'));
  assert.equal((svg.match(/<path d="M[^"]*V/g) ?? []).length, 1, 'one error bar');
  assert.deepEqual(paretoFront([{ x: 10, y: 5 }, { x: 20, y: 6 }, { x: 15, y: 7 }, { x: 5, y: 4 }]), [3, 0, 1]);
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
});

const HAVE_DATA = defaultDatasetDir('fashion-mnist') !== null;

test('runReproduce on the shipped models: two runs, one JSON each; killed midway, the rerun does only what is missing', { skip: HAVE_DATA ? false : 'Fashion-MNIST test split not installed' }, async () => {
  const out = tmp();
  try {
    const o = { out, quick: true, n: 20, only: ['dense', 'fixed-tokens_75-75-75'], modelsDir: path.join(repoRoot, 'models'), command: 'test', commit: 'c', machine: 'm' };
    const r1 = await runReproduce(o);
    assert.deepEqual(r1.ran, ['dense--seed0', 'fixed-tokens_75-75-75--seed0']);
    const invocations = () => fs.readFileSync(path.join(out, 'invocations.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { ran: number; seconds: number });
    assert.deepEqual(invocations().map((i) => i.ran), [2]);
    const recs = readRuns(out);
    assert.equal(recs.length, 2);
    const fixed = recs.find((r) => r.setting.id === 'fixed-tokens_75-75-75')!, dense = recs.find((r) => r.setting.id === 'dense')!;
    assert.ok(fixed.gflopsPerImage < dense.gflopsPerImage);
    assert.equal(fixed.baseline?.name, 'fixed-tokens');
    assert.equal(fixed.metrics.nGen, 20);
    assert.ok(fs.existsSync(path.join(out, fixed.files.grid!)) && fixed.files.maps.length > 0);
    // "kill" the second run: its JSON is gone (it is written last), its PNGs may be there
    fs.rmSync(path.join(out, 'runs', 'fixed-tokens_75-75-75--seed0.json'));
    const r2 = await runReproduce(o);
    assert.deepEqual(r2.ran, ['fixed-tokens_75-75-75--seed0']);
    assert.deepEqual(r2.skipped, ['dense--seed0']);
    // the same images and FLOPs again (seeded), FID identical
    const again = readRuns(out).find((r) => r.setting.id === 'fixed-tokens_75-75-75')!;
    assert.equal(again.metrics.fid, fixed.metrics.fid);
    assert.equal(again.gflopsPerImage, fixed.gflopsPerImage);
    // another plan in the same folder is refused
    await assert.rejects(() => runReproduce({ ...o, n: 30 }), /holds runs of another plan \(n 20 vs 30\)/);
    const r3 = await runReproduce(o);
    assert.deepEqual(r3.ran, []);
    assert.deepEqual(invocations().map((i) => i.ran), [2, 1], 'one line per invocation that ran something');
  } finally { fs.rmSync(out, { recursive: true, force: true }); }
});

test('distilled baselines: the trainer\'s core applies the baseline to the student once, at its first stage-2 use', () => {
  const calls: string[] = [];
  const core = {
    distillLoss: (stage: number) => { calls.push(`loss${stage}`); return null; },
    trainableParameters: (_s: unknown, stage: number) => { calls.push(`params${stage}`); return new Map(); },
    validateDistill: () => { calls.push('validate'); return null; },
  } as unknown as DistillCore;
  const applied: unknown[] = [];
  const wrapped = coreWithBaseline(core, (s) => { applied.push(s); calls.push('apply'); });
  const student = {} as ActVAR, other = {} as ActVAR;
  const w = wrapped as unknown as { distillLoss: (...a: unknown[]) => void; trainableParameters: (...a: unknown[]) => void; validateDistill: (...a: unknown[]) => void };
  w.validateDistill(student); w.trainableParameters(student, 1); w.distillLoss(1, student); w.distillLoss(1, student);
  assert.deepEqual(applied, [], 'stage 1 trains ActVAR\'s own gates');
  w.trainableParameters(student, 2); w.distillLoss(2, student); w.distillLoss(2, student); w.validateDistill(student);
  w.distillLoss(2, other);
  assert.deepEqual(applied, [student, other]);
  assert.deepEqual(calls, ['validate', 'params1', 'loss1', 'loss1', 'apply', 'params2', 'loss2', 'loss2', 'validate', 'apply', 'loss2']);
  assert.equal(coreWithBaseline(core, null), core);
});
