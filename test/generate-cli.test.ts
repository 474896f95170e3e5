/**
 * `actvar generate` end to end (a child process running dist/src/cli/main.js): the fixture weights
 * with --top-k 1 write tokens.json equal to the official idx_BL, the PNG grid holds the official
 * image (truncated to uint8), per-image PNGs, batching does not change results, and bad input exits
 * non-zero with a clear message and writes nothing.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSafetensors } from '../src/io/safetensors.js';
import { decodePng, toUint8 } from '../src/image/png.js';
import { repoRoot, tinyDir, needsFixtures } from './util/fixtures.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const VAR_FILE = path.join(tinyDir, 'var_state_dict.safetensors');
const VAE_FILE = path.join(tinyDir, 'vqvae_state_dict.safetensors');
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(VAR_FILE, VAE_FILE, path.join(tinyDir, 'generate_greedy_cfg1.5.safetensors'));

function run(args: string[], cwd: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'generate', ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tmp(): string { return fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-gen-')); }

test('generate --top-k 1 with the fixture weights writes the official idx_BL, the image grid and per-image PNGs', TINY, () => {
  const dir = tmp();
  try {
    const r = run(['--var', VAR_FILE, '--vae', VAE_FILE, '--classes', '3,7', '--top-k', '1', '--cfg', '1.5', '--seed', '5',
      '--tokens-out', 'tokens.json', '--out', 'grid.png', '--out-dir', 'imgs', '--quiet'], dir);
    assert.equal(r.code, 0, r.stderr);
    const fx = readSafetensors(path.join(tinyDir, 'generate_greedy_cfg1.5.safetensors'));
    const want = fx.get('idx_BL')!;
    const tokens = JSON.parse(fs.readFileSync(path.join(dir, 'tokens.json'), 'utf8')) as { idx_BL: number[][] };
    assert.equal(tokens.idx_BL.length, 2);
    assert.deepEqual(tokens.idx_BL.flat(), [...want.data]);
    // grid: 2 images side by side, each the official image truncated to uint8 (±1 where float noise crosses an integer)
    const grid = decodePng(fs.readFileSync(path.join(dir, 'grid.png')));
    assert.equal(grid.width, 128);
    assert.equal(grid.height, 64);
    const img = fx.get('img_01')!.f32;
    let maxDev = 0;
    for (let b = 0; b < 2; b++) for (let c = 0; c < 3; c++) for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) {
      const want8 = toUint8(img[((b * 3 + c) * 64 + y) * 64 + x]);
      const got = grid.data[(y * 128 + b * 64 + x) * 3 + c];
      maxDev = Math.max(maxDev, Math.abs(got - want8));
    }
    assert.ok(maxDev <= 1, `grid pixels deviate by ${maxDev}`);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'imgs')).sort(), ['0_class3.png', '1_class7.png']);
    const one = decodePng(fs.readFileSync(path.join(dir, 'imgs', '1_class7.png')));
    assert.equal(one.width, 64);
    assert.deepEqual([...one.data.subarray(0, 3)], [...grid.data.subarray(64 * 3, 64 * 3 + 3)]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('generate: tokens and images do not depend on --batch (same bytes); --per-class repeats classes', TINY, () => {
  const dir = tmp();
  try {
    const common = ['--var', VAR_FILE, '--vae', VAE_FILE, '--classes', '2,9', '--per-class', '2', '--top-k', '20', '--top-p', '0.9', '--seed', '11', '--quiet'];
    const a = run([...common, '--batch', '4', '--tokens-out', 'a.json', '--out', 'a.png'], dir);
    const b = run([...common, '--batch', '1', '--tokens-out', 'b.json', '--out', 'b.png'], dir);
    const c = run([...common, '--batch', '3', '--out', 'c.png'], dir);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(c.code, 0, c.stderr);
    assert.ok(fs.readFileSync(path.join(dir, 'a.png')).equals(fs.readFileSync(path.join(dir, 'b.png'))), '--batch 4 and 1: same PNG bytes');
    assert.ok(fs.readFileSync(path.join(dir, 'a.png')).equals(fs.readFileSync(path.join(dir, 'c.png'))), '--batch 4 and 3: same PNG bytes');
    const ta = JSON.parse(fs.readFileSync(path.join(dir, 'a.json'), 'utf8')).idx_BL as number[][];
    const tb = JSON.parse(fs.readFileSync(path.join(dir, 'b.json'), 'utf8')).idx_BL as number[][];
    assert.equal(ta.length, 4);
    assert.deepEqual(ta, tb);
    assert.notDeepEqual(ta[0], ta[1], 'two images of one class differ (own RNG streams)');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['a.json', 'a.png', 'b.json', 'b.png', 'c.png'], 'only the requested outputs are written');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('generate: bad input exits non-zero with a clear message and writes nothing', TINY, () => {
  const dir = tmp();
  try {
    const outs = ['--out', 'g.png', '--tokens-out', 't.json', '--out-dir', 'imgs', '--quiet'];
    const base = ['--var', VAR_FILE, '--vae', VAE_FILE];
    const cases: [string[], RegExp][] = [
      [[...base, '--classes', '3,10'], /unknown class id 10: this model has classes 0\.\.9/],
      [[...base, '--classes', '3', '--cfg', '-1'], /--cfg must be a number in \[0, 1000\]/],
      [[...base, '--classes', '3', '--top-p', '1.5'], /--top-p must be a number in \[0, 1\]/],
      [[...base, '--classes', '3', '--top-k', '-1'], /--top-k must be an integer in \[0, /],
      [[...base, '--classes', 'a,b'], /--classes must be a comma-separated list, each an integer/],
      [['--var', path.join(dir, 'missing.safetensors'), '--vae', VAE_FILE, '--classes', '3'], /--var .*missing\.safetensors: cannot read the file \(ENOENT\)/],
      [['--var', VAE_FILE, '--vae', VAE_FILE, '--classes', '3'], /cannot load --var .*(cannot infer the VAR architecture|blocks)/],
      [['--var', VAR_FILE, '--vae', VAR_FILE, '--classes', '3'], /cannot load --vae/],
      [['--classes', '3', '--vae', VAE_FILE], /--var FILE is required/],
    ];
    fs.writeFileSync(path.join(dir, 'garbage.safetensors'), 'not a weight file at all');
    cases.push([['--var', path.join(dir, 'garbage.safetensors'), '--vae', VAE_FILE, '--classes', '3'], /cannot load --var/]);
    for (const [args, msg] of cases) {
      const r = run([...args, ...outs], dir);
      assert.notEqual(r.code, 0, `expected failure for ${args.join(' ')}`);
      assert.match(r.stderr, msg, `message for ${args.join(' ')}`);
      assert.doesNotMatch(r.stderr, /internal error/, `a user error, not a crash: ${r.stderr}`);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['garbage.safetensors'].filter((f) => fs.existsSync(path.join(dir, f))), `nothing written for ${args.join(' ')}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
