/**
 * The CLI's error contract (issue 18), run as child processes: every flag of every command with an
 * invalid value, and every hostile case of the issue (outputs onto inputs, outputs that are not
 * regular files, unwritable places, configurations the models would fail on, sizes, seeds, extra
 * arguments) exits 2 with an `actvar: error:` line, never "internal error", and creates or changes
 * nothing: the working folder is listed and hashed before and after, and so are the fixture inputs.
 * A completeness check walks the program's commands so that a new flag without a case fails here.
 * Plus the output policy in process (keepOnFailure) and `train-classifier --steps 1` leaving
 * models/ byte-identical.
 */
import './util/setup.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Rng } from '../src/tensor/rng.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { encodePng } from '../src/image/png.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { VAR } from '../src/var/var.js';
import { initVarParams } from '../src/var/init.js';
import { DEFAULT_TOKENIZER_CONFIG, VQVAE_FORMAT } from '../src/train/train-vae.js';
import { VAR_FORMAT, varConfigFor } from '../src/train/train-var.js';
import { Classifier, CLASSIFIER_FORMAT } from '../src/eval/classifier.js';
import { DEMO_MODEL_FILES } from '../src/app/demo.js';
import { findResume } from '../src/train/loop.js';
import { resolveCheckpoint } from '../src/train/checkpoint.js';
import { buildProgram } from '../src/cli/program.js';
import { keepOnFailure, OutputPlan } from '../src/cli/outputs.js';
import { reportError } from '../src/cli/errors.js';
import { repoRoot } from './util/fixtures.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const VAR_FILE = path.join(repoRoot, 'models/var-fashion-mnist.safetensors'); // the shipped models: no fixture needed
const VAE_FILE = path.join(repoRoot, 'models/tokenizer-fashion-mnist.safetensors');

/** Child processes still running (killed in `after`). */
const children = new Set<ReturnType<typeof spawn>>();
let dir = '';
const TOK = `models/${DEMO_MODEL_FILES.tokenizer}`;
const CLF = `models/${DEMO_MODEL_FILES.classifier}`;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-cli-errors-'));
  fs.mkdirSync(path.join(dir, 'models'));
  const vae = VQVAE.random({ ...DEFAULT_TOKENIZER_CONFIG, ch: 8, chMult: [1, 2, 2], normGroups: 4, Cvae: 8, vocabSize: 32 }, new Rng(1));
  writeSafetensors(path.join(dir, TOK), vae.stateDict(), { format: VQVAE_FORMAT, config: JSON.stringify(vae.config) });
  const cfg = varConfigFor(vae, 10, { depth: 2, width: 32, heads: 2 });
  writeSafetensors(path.join(dir, 'models', DEMO_MODEL_FILES.var), new VAR(cfg, initVarParams(cfg, new Rng(2))).stateDict(),
    { format: VAR_FORMAT, config: JSON.stringify(cfg), dataset: 'fashion-mnist' });
  const clf = Classifier.init({ c1: 4, c2: 8, hidden: 16 }, 3);
  writeSafetensors(path.join(dir, CLF), clf.params, { format: CLASSIFIER_FORMAT, config: JSON.stringify(clf.config) });
  // hostile surroundings: an existing folder, a file, a hard link to an input, a symbolic link, a FIFO,
  // a corrupt weights file, a step folder and a folder with an earlier run's checkpoints
  fs.mkdirSync(path.join(dir, 'existing-dir'));
  fs.writeFileSync(path.join(dir, 'exists.safetensors'), 'old');
  fs.writeFileSync(path.join(dir, 'target.png'), 'target');
  fs.symlinkSync('target.png', path.join(dir, 'link.png'));
  fs.linkSync(path.join(dir, TOK), path.join(dir, 'tok-hardlink.safetensors'));
  assert.equal(spawnSync('mkfifo', [path.join(dir, 'fifo.png')]).status, 0, 'mkfifo');
  fs.writeFileSync(path.join(dir, 'corrupt.safetensors'), 'not a weights file');
  fs.mkdirSync(path.join(dir, 'ck-step'));
  fs.writeFileSync(path.join(dir, 'ck-step', 'state.json'), '{}');
  fs.mkdirSync(path.join(dir, 'pngs')); // 4 grey 28×28 images for features / eval
  for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(dir, 'pngs', `${i}.png`), encodePng({ width: 28, height: 28, data: new Uint8Array(28 * 28 * 3).fill(40 * i) }));
  fs.mkdirSync(path.join(dir, 'ck-old'));
  fs.writeFileSync(path.join(dir, 'ck-old', 'latest.json'), '{}');
});

after(() => {
  for (const p of children) p.kill('SIGKILL'); // a filtered run does not wait for the training run
  process.chdir(repoRoot);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(modelsRun.dir, { recursive: true, force: true });
});

/**
 * `actvar train-classifier --steps 1` in a folder holding a copy of the shipped models/, started
 * first so that its training overlaps the other tests (checked in the last test).
 */
const modelsRun = (() => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-models-'));
  fs.mkdirSync(path.join(d, 'models'));
  for (const f of fs.readdirSync(path.join(repoRoot, 'models'))) fs.copyFileSync(path.join(repoRoot, 'models', f), path.join(d, 'models', f));
  const before = snapshot(path.join(d, 'models'));
  return { dir: d, before, result: runAsync(['train-classifier', '--steps', '1', '--progress', 'none'], d) };
})();

/** Every entry under `root`: regular files by SHA-256, links by target, other kinds by kind. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name), rel = path.relative(root, p), st = fs.lstatSync(p);
      if (st.isDirectory()) { out[rel] = 'dir'; walk(p); } else if (st.isFile()) out[rel] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
      else if (st.isSymbolicLink()) out[rel] = `link → ${fs.readlinkSync(p)}`;
      else out[rel] = st.isFIFO() ? 'fifo' : 'other';
    }
  };
  walk(root);
  return out;
}
function inputsHash(): string {
  return [VAR_FILE, VAE_FILE].map((f) => createHash('sha256').update(fs.readFileSync(f)).digest('hex')).join();
}

function runAsync(args: string[], cwd: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cli, ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(p);
    p.on('exit', () => children.delete(p));
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), 600_000);
    p.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, stderr }); });
  });
}

/**
 * The program parsed in this process, reported as main.ts does (same code path, no process start):
 * for the long table; every case fails before any work.
 */
async function runInProcess(args: string[]): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  const program = buildProgram({ writeErr: (s) => { stderr += s; }, writeOut: () => {} });
  try {
    await program.parseAsync(['node', 'actvar', ...args]);
    return { code: 0, stderr };
  } catch (e) {
    return { code: reportError(e, (s) => { stderr += s; }), stderr };
  }
}

/** Run the cases as child processes two at a time (the CLI starts in ~0.3 s), or in this process one by one. */
async function runAll(cases: { args: string[]; msg?: RegExp }[], inProcess = false): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++];
      const r = inProcess ? await runInProcess(c.args) : await runAsync(c.args, dir);
      const label = `actvar ${c.args.map((a) => (a === '' ? "''" : a)).join(' ')}`;
      if (r.code !== 2) failures.push(`${label}: exit ${r.code}, expected 2\n${r.stderr}`);
      else if (!/^actvar: error: /m.test(r.stderr)) failures.push(`${label}: no 'actvar: error:' line\n${r.stderr}`);
      else if (/internal error/.test(r.stderr)) failures.push(`${label}: internal error\n${r.stderr}`);
      else if (c.msg && !c.msg.test(r.stderr)) failures.push(`${label}: message does not match ${c.msg}\n${r.stderr}`);
    }
  };
  await Promise.all(inProcess ? [worker()] : [worker(), worker()]);
  return failures;
}

/** The arguments that make each command valid apart from the flag under test. */
const BASE: Record<string, string[]> = {
  generate: ['generate', '--var', VAR_FILE, '--vae', VAE_FILE, '--classes', '1', '--quiet'],
  demo: ['demo', '--models', 'models', '--quiet'],
  'train-classifier': ['train-classifier', '--steps', '1', '--progress', 'none'],
  'train-vae': ['train-vae', '--steps', '1', '--progress', 'none'],
  'train-var': ['train-var', '--tokenizer', TOK, '--steps', '1', '--progress', 'none'],
  flops: ['flops', '--preset', 'd16'],
  'bench gemm': ['bench', 'gemm', '--repeats', '1'],
  'bench actvar': ['bench', 'actvar', '--repeats', '1'],
  features: ['features', '--images', 'pngs', '--weights', CLF, '--out', 'f.safetensors', '--quiet'],
  reproduce: ['reproduce', '--out', 'rep-out', '--dry-run', '--quiet'],
  eval: ['eval', '--n', '4', '--var', `models/${DEMO_MODEL_FILES.var}`, '--tokenizer', TOK, '--weights', CLF, '--ref', 'pngs', '--quiet'],
  distill: ['distill', '--var', `models/${DEMO_MODEL_FILES.var}`, '--tokenizer', TOK, '--steps', '2', '--train-limit', '100', '--holdout', '10', '--progress', 'none'],
};

/** One or more invalid values of every flag that takes a value, per command (shared flags first). */
const TRAIN_SHARED: Record<string, string[]> = {
  '--dataset': ['cifar'], '--data-dir': ['', 'exists.safetensors'], '--train-limit': ['0'], '--steps': ['0', '1.5'], '--epochs': ['0', 'abc'],
  '--batch-size': ['0', '100000'], '--lr': ['0', '-1'], '--wd': ['-0.1', 'Infinity'], '--warmup': ['-1'], '--seed': ['4294967296', '-1'],
  '--eval-every': ['0'], '--eval-samples': ['0', '10001'], '--ckpt-dir': ['', 'exists.safetensors'], '--ckpt-every': ['0'], '--stop-at': ['0'],
  '--out': ['', 'existing-dir'], '--log': ['', 'existing-dir'], '--progress': ['fancy'],
};
const SAMPLING: Record<string, string[]> = {
  '--cfg': ['1e39', '-1', 'NaN'], '--top-k': ['-1', '0x10'], '--top-p': ['1.5', ''], '--seed': ['4294967296', '1.5'],
};
const ACTVAR_SETTINGS: Record<string, string[]> = {
  '--token-rates': ['75,75', '0.5,,0.5'], '--expert-rate': ['0', '1.5'], '--experts': ['0'], '--scales': ['-1', 'a'], '--kv-policy': ['some', ''],
};
const INVALID: Record<string, Record<string, string[]>> = {
  generate: {
    ...SAMPLING, ...ACTVAR_SETTINGS,
    '--var': ['', 'missing.safetensors'], '--vae': ['', 'corrupt.safetensors'], '--classes': ['a,b', '-1', '', '10'], '--per-class': ['0', '1000000000'],
    '--out': ['', 'existing-dir'], '--out-dir': ['', 'exists.safetensors'], '--tokens-out': ['', 'fifo.png'], '--batch': ['0', '100000'],
    '--preset': ['d99'], '--init-seed': ['4294967296'], '--actvar-weights': [''], '--actvar-calib': ['-1'], '--actvar-grouping': ['random'],
    '--actvar-save': [''], '--act-maps': [''], '--baseline': ['random', ''], '--weights-dtype': ['fp16', 'BF16', ''], '--actvar-model': ['', 'missing.safetensors', 'corrupt.safetensors', `models/${DEMO_MODEL_FILES.var}`],
  },
  demo: {
    ...SAMPLING, ...ACTVAR_SETTINGS,
    '--cfg': ['1e300'], '--models': ['', 'missing-dir'], '--tokenizer': ['', 'missing.safetensors'], '--var': ['', CLF], '--classifier': ['', TOK],
    '--out-dir': ['', 'exists.safetensors'], '--per-class': ['0', '1e9'], '--actvar-weights': ['', 'corrupt.safetensors'], '--actvar-calib': ['-1'],
    '--batch': ['0'], '--repeats': ['0'], '--actvar-model': ['', 'missing.safetensors'], '--kl-images': ['-1', '10001'], '--data-dir': [''],
  },
  'train-classifier': {
    ...TRAIN_SHARED, '--augment-shift': ['-1', '17'], '--c1': ['0'], '--c2': ['0'], '--hidden': ['0', '100000'], '--kernel': ['4', '0', '33'],
  },
  'train-vae': {
    ...TRAIN_SHARED, '--clip': ['-1'], '--restart-every': ['-1'], '--dead-fraction': ['2'], '--ch': ['0'], '--ch-mult': ['0,1', '1,2,99'],
    '--res-blocks': ['0'], '--cvae': ['0'], '--vocab': ['1'], '--patch-nums': ['1,2,99', '1,2,3', '1,4,2,8'], '--quant-resi': ['2'],
    '--share-quant-resi': ['-1'], '--norm-groups': ['7', '0'], '--beta': ['-1'], '--final-eval-samples': ['0'],
  },
  'train-var': {
    ...TRAIN_SHARED, '--tokenizer': ['', 'missing.safetensors', CLF, 'corrupt.safetensors'], '--depth': ['0'], '--width': ['0'], '--heads': ['3', '0'],
    '--mlp-ratio': ['0'], '--drop-path': ['5', '1'], '--cond-drop': ['2', '1'], '--alng': ['-1'], '--wd-end': ['-1'], '--wpe': ['2'],
    '--clip': ['-1'], '--ls': ['3', '1'], '--final-eval-samples': ['0'], '--token-cache': ['', 'exists.safetensors'],
  },
  flops: { ...ACTVAR_SETTINGS, '--preset': ['d36', 'x'] },
  'bench gemm': { '--threads': ['0'], '--shape': ['1,2', '0,1,1', '100000,100000,100000'], '--repeats': ['0'] },
  'bench actvar': { ...ACTVAR_SETTINGS, '--preset': ['d99'], '--batch': ['0'], '--repeats': ['0'] },
  features: { '--images': ['', 'missing-dir'], '--extractor': ['vgg'], '--weights': ['', 'corrupt.safetensors'], '--out': ['', 'existing-dir', CLF] },
  eval: {
    ...SAMPLING, ...ACTVAR_SETTINGS,
    '--n': ['0', '1e9'], '--var': ['', 'missing.safetensors'], '--tokenizer': ['', 'missing.safetensors'], '--images': ['', 'missing-dir'],
    '--ref': ['', 'cifar:test'], '--extractor': ['vgg'], '--weights': ['', 'corrupt.safetensors'], '--batch': ['0'], '--splits': ['0'],
    '--cache-dir': [''], '--features-out': ['', 'existing-dir', TOK], '--shard': ['3/3', 'a'], '--out': ['', 'existing-dir'],
    '--merge': ['missing.safetensors'], '--actvar-weights': [''], '--actvar-calib': ['-1'], '--baseline': ['static'], '--weights-dtype': ['float16'], '--actvar-model': ['', 'missing.safetensors', 'corrupt.safetensors'],
  },
  distill: {
    ...TRAIN_SHARED, ...ACTVAR_SETTINGS,
    '--var': ['', 'missing.safetensors', 'corrupt.safetensors', TOK], '--tokenizer': ['', 'missing.safetensors', CLF],
    '--holdout': ['0', '100'], '--test-samples': ['-1', '10001'], '--token-cache': ['', 'exists.safetensors'], '--stage': ['3', 'all'],
    '--stage1-share': ['0', '1'], '--stage2-lr': ['0', '-1'], '--schedule': ['linear'], '--init': ['', 'missing.safetensors', 'corrupt.safetensors'], '--actvar-calib': ['-1'],
    '--alpha': ['-1'], '--beta': ['-1'], '--clip': ['-1'], '--batch-size': ['0', '100000', '91'],
  },
  reproduce: {
    '--out': ['', 'exists.safetensors'], '--seeds': ['0', 'a'], '--n': ['5', '1e9'], '--only': ['nope', ','], '--models': ['', 'missing-dir'],
    '--doc': ['', 'existing-dir'], '--screenshot': [''],
  },
};

test('the table covers every flag that takes a value, of every command', () => {
  const missing: string[] = [];
  const walk = (c: ReturnType<typeof buildProgram>, pre: string[]): void => {
    for (const s of c.commands) {
      const name = [...pre, s.name()].join(' ');
      for (const o of s.options) {
        if (!(o.required || o.optional) || !o.long) continue;
        if (!INVALID[name]?.[o.long]?.length) missing.push(`${name} ${o.long}`);
      }
      walk(s, [...pre, s.name()]);
    }
  };
  walk(buildProgram(), []);
  assert.deepEqual(missing, [], 'flags without invalid-value cases');
});

test('every flag of every command with an invalid value: exit 2, one actvar: error: line, nothing created or changed', async () => {
  process.chdir(dir); // the in-process runs resolve relative paths as a process started in `dir` would
  const cases: { args: string[] }[] = [];
  for (const [command, flags] of Object.entries(INVALID)) {
    for (const [flag, values] of Object.entries(flags)) for (const v of values) cases.push({ args: [...BASE[command], flag, v] });
  }
  const before = snapshot(dir), inputs = inputsHash();
  const failures = await runAll(cases, true);
  assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases failed`);
  assert.deepEqual(snapshot(dir), before, 'the working folder is unchanged');
  assert.equal(inputsHash(), inputs, 'the fixture inputs are unchanged');
  // the same path as a process: one flag of each command
  const viaProcess = Object.keys(INVALID).map((command) => {
    const [flag, values] = Object.entries(INVALID[command])[0];
    return { args: [...BASE[command], flag, values[0]] };
  });
  assert.deepEqual(await runAll(viaProcess), []);
  assert.deepEqual(snapshot(dir), before, 'the working folder is unchanged');
});

test('issue 18 cases: outputs onto inputs, non-regular outputs, unwritable places, sizes, seeds, extra arguments', async () => {
  const G = BASE.generate, TC = BASE['train-classifier'], TV = BASE['train-var'];
  const cases: { args: string[]; msg: RegExp }[] = [
    // 1. outputs that are inputs (by device + inode: a hard link is the same file), outputs that are each other
    { args: [...G, '--out', VAR_FILE], msg: /this is the input --var/ },
    { args: [...G, '--tokens-out', VAE_FILE], msg: /this is the input --vae/ },
    { args: [...G, '--actvar', '--actvar-save', VAR_FILE], msg: /this is the input --var/ },
    { args: [...TV, '--out', TOK], msg: /this is the input --tokenizer/ },
    { args: [...TV, '--out', 'tok-hardlink.safetensors'], msg: /this is the input --tokenizer/ },
    { args: [...TC, '--out', CLF], msg: /the file exists; add --force/ },
    { args: [...G, '--out', 'x.png', '--tokens-out', 'x.png'], msg: /name the same path/ },
    { args: [...G, '--out', 'x.png', '--tokens-out', './sub/../x.png'], msg: /name the same path/ },
    { args: [...TC, '--out', 'x.safetensors', '--log', 'x.safetensors'], msg: /name the same path/ },
    { args: [...G, '--out-dir', 'imgs', '--out', 'imgs/0_class1.png'], msg: /name the same path/ },
    { args: [...G, '--out', 'g.png', '--tokens-out', 'g.png/t.json'], msg: /is a file path, but --tokens-out/ },
    // 2. unwritable places and existing folders, refused before any work
    { args: [...TC, '--out', 'existing-dir'], msg: /is a directory/ },
    { args: [...TC, '--out', '/sys/actvar-test/c.safetensors'], msg: /--out \/sys\/actvar-test\/c\.safetensors: cannot/ },
    { args: [...TC, '--ckpt-dir', '/sys/actvar-test-ck'], msg: /--ckpt-dir .*cannot/ },
    { args: [...TC, '--log', '/sys/actvar-test.jsonl'], msg: /--log .*cannot/ },
    { args: [...TV, '--token-cache', '/sys/actvar-test-cache'], msg: /--token-cache .*cannot/ },
    { args: [...G, '--actvar', '--actvar-save', '/sys/w.safetensors', '--out', 'o.png'], msg: /--actvar-save .*cannot/ },
    { args: [...G, '--out', 'exists.safetensors/g.png'], msg: /not a directory/ },
    { args: [...TC, '--data-dir', 'existing-dir'], msg: /train split not found in existing-dir/ }, // after the run folder was made: removed again
    // 3. configurations the models would fail on (and the table above), weights that are not weights
    { args: [...BASE['train-classifier'], '--kernel', '4'], msg: /--kernel must be odd/ },
    { args: [...BASE['train-vae'], '--norm-groups', '7'], msg: /--norm-groups 7 does not divide .* allowed: 1, 2, 4, 8, 16/ },
    { args: [...TV, '--heads', '3'], msg: /--heads 3 does not divide --width 128; allowed: / },
    { args: [...TV, '--depth', '64', '--width', '4096', '--heads', '64'], msg: /M parameters need .* GiB for weights, gradients and AdamW moments alone/ },
    { args: [...TV, '--tokenizer', 'missing.safetensors'], msg: /--tokenizer missing\.safetensors: missing/ },
    { args: [...G, '--actvar', '--actvar-weights', 'corrupt.safetensors'], msg: /cannot load --actvar-weights/ },
    { args: [...G, '--actvar', '--experts', '7'], msg: /experts \(7\) must divide/ },
    { args: [...G, '--token-rates', '0.5,0.5'], msg: /--token-rates needs --actvar/ },
    { args: [...G, '--baseline', 'fixed-tokens'], msg: /--baseline needs --actvar/ },
    // 4. the training commands' argument errors
    { args: ['train-vae', '--bogus'], msg: /unknown option '--bogus'/ },
    { args: ['train-var', '--steps', '0'], msg: /--steps must be an integer/ },
    // 5. outputs that are not regular files, pseudo file systems
    { args: [...G, '--out', '/dev/null'], msg: /is a device; actvar only replaces regular files/ },
    { args: [...G, '--out', 'link.png'], msg: /is a symbolic link/ },
    { args: [...G, '--out', 'fifo.png'], msg: /is a FIFO/ },
    { args: [...G, '--out', '/proc/sub/g.png'], msg: /cannot create the directory \/proc\/sub/ },
    { args: [...G, '--out-dir', '/proc/x'], msg: /--out-dir \/proc\/x: cannot/ },
    { args: [...G, '--out', '/sys/g.png'], msg: /--out \/sys\/g\.png: cannot/ },
    { args: ['demo', '--models', 'models', '--out-dir', '/proc/x'], msg: /--out-dir \/proc\/x: cannot/ },
    // 6. sizes
    { args: [...G, '--classes', '0,1,2,3,4,5,6,7,8,9', '--per-class', '2000'], msg: /at most 10000 per run/ },
    { args: [...G, '--classes', '0,1', '--per-class', '1000'], msg: /a grid of 2000 images is too large/ },
    { args: ['demo', '--per-class', '1e9'], msg: /--per-class must be an integer in \[1, 100\]/ },
    // 7. seeds, --stop-at, extra arguments, empty paths, checkpoint folders
    { args: [...G, '--seed', '4294967296'], msg: /--seed must be an integer in \[0, 4294967295\]/ },
    { args: [...TC, '--stop-at', '5', '--ckpt-dir', 'ck'], msg: /--stop-at 5 is beyond the end of the run \(1 steps\)/ },
    { args: [...G, '--classes', '0', '1'], msg: /too many arguments/ },
    { args: [...TC, 'extra'], msg: /too many arguments/ },
    { args: ['bench', 'gemm', 'extra'], msg: /too many arguments/ },
    { args: [...G, '--out', ''], msg: /--out needs a path/ },
    { args: [...TC, '--resume'], msg: /--resume needs --ckpt-dir/ },
    { args: [...TC, '--ckpt-dir', 'ck-step', '--resume'], msg: /is one checkpoint \(a step folder\)/ },
    { args: [...TC, '--ckpt-dir', 'ck-old'], msg: /holds checkpoints of an earlier run; add --resume/ },
    { args: [...TC, '--warmup', '5'], msg: /--warmup 5 is longer than the run/ },
  ];
  const before = snapshot(dir), inputs = inputsHash();
  const failures = await runAll(cases);
  assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases failed`);
  assert.deepEqual(snapshot(dir), before, 'the working folder is unchanged');
  assert.equal(inputsHash(), inputs, 'the fixture inputs are unchanged');
  assert.ok(!fs.existsSync('/proc/sub') && !fs.existsSync('/sys/actvar-test'));
});

test('a final write that fails keeps the result elsewhere and says where', () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-keep-'));
  try {
    const target = path.join(d, 'gone', 'w.safetensors'); // its folder does not exist (removed during training)
    let msg = '';
    try { keepOnFailure('--out', target, (p) => fs.writeFileSync(p, 'weights')); } catch (e) { msg = (e as Error).message; }
    const m = /the trained weights were kept in (\S+)$/.exec(msg);
    assert.ok(m, msg);
    assert.equal(fs.readFileSync(m[1], 'utf8'), 'weights');
    fs.rmSync(m[1]);
    // and a successful write leaves exactly the file (the temp file went into the output's own folder and was renamed)
    keepOnFailure('--out', path.join(d, 'w.safetensors'), (p) => fs.writeFileSync(p, 'ok'));
    assert.deepEqual(fs.readdirSync(d), ['w.safetensors']);
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});

test('output plan: prepare creates missing folders, cleanup removes them; resume without a checkpoint folder starts over, without a pointer takes the newest step', () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-plan-'));
  try {
    const plan = new OutputPlan().file('--out', path.join(d, 'a', 'b', 'c.png')).dir('--out-dir', path.join(d, 'x'));
    plan.check();
    plan.prepare();
    assert.ok(fs.statSync(path.join(d, 'a', 'b')).isDirectory() && fs.statSync(path.join(d, 'x')).isDirectory());
    plan.cleanup();
    assert.deepEqual(fs.readdirSync(d), []);
    const lines: string[] = [];
    assert.equal(findResume(path.join(d, 'never-created'), true, {}, 'train-x', (s) => lines.push(s)), null);
    assert.match(lines.join('\n'), /no checkpoint .* yet, starting from scratch/);
    // step folders without a (valid) pointer: the newest is used, never a step folder as --ckpt-dir (saves would nest)
    const ck = path.join(d, 'ck');
    fs.mkdirSync(path.join(ck, 'step-00000002'), { recursive: true });
    fs.mkdirSync(path.join(ck, 'step-00000004'));
    assert.equal(resolveCheckpoint(ck), path.join(ck, 'step-00000004'));
    fs.writeFileSync(path.join(ck, 'latest.json'), '{trunc');
    assert.equal(resolveCheckpoint(ck), path.join(ck, 'step-00000004'));
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});

test('`actvar train-classifier --steps 1` leaves models/ byte-identical and writes into runs/', async () => {
  const d = modelsRun.dir;
  const r = await modelsRun.result;
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(snapshot(path.join(d, 'models')), modelsRun.before);
  const runs = fs.readdirSync(path.join(d, 'runs'));
  assert.equal(runs.length, 1);
  assert.match(runs[0], /^train-classifier-\d{8}-\d{6}Z$/);
  assert.deepEqual(fs.readdirSync(path.join(d, 'runs', runs[0])), ['classifier.safetensors']);
  assert.match(r.stderr, /wrote runs\/train-classifier-.*\/classifier\.safetensors/);
});
