/**
 * actvar/core needs no Node: esbuild bundles dist/src/core.js for the browser platform, where every Node built-in
 * (`node:fs`, `fs`, `worker_threads`, …) is unresolvable; the build must succeed and take in no koffi (FFI) and no
 * pngjs (zlib). Then the bundle runs: a tensor op and a model loaded from bytes.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { repoRoot } from './util/fixtures.js';

const entry = path.join(repoRoot, 'dist/src/core.js');

test('the core entry bundles for the browser: no Node built-in, no koffi, no pngjs in its import graph', async () => {
  const r = await esbuild.build({
    entryPoints: [entry], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent',
  }).catch((e: { errors?: esbuild.Message[] }) => {
    const why = (e.errors ?? []).map((m) => `${m.location?.file ?? '?'}: ${m.text}`).join('\n');
    assert.fail(`bundling actvar/core for the browser failed:\n${why}`);
  });
  const inputs = Object.keys(r.metafile.inputs);
  const bad = inputs.filter((f) => /node_modules\/(koffi|pngjs)\//.test(f) || f.startsWith('node:'));
  assert.deepEqual(bad, [], 'Node-only modules in the core bundle');
  assert.ok(inputs.some((f) => f.endsWith('src/var/var.js')) && inputs.some((f) => f.endsWith('src/io/pth.js')), 'the bundle holds the models and codecs');
  // the bundle runs (here under Node, with nothing of the Node edge installed): load the shipped VAR from bytes
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-core-'));
  try {
    const file = path.join(dir, 'core.mjs');
    fs.writeFileSync(file, r.outputFiles[0].contents);
    const core = await import(pathToFileURL(file).href) as typeof import('../src/core.js');
    const model = core.loadVar(new Uint8Array(fs.readFileSync(path.join(repoRoot, 'models/var-fashion-mnist.safetensors'))));
    assert.equal(core.loadedFrom(model)?.metadata.format, 'actvar-var/1');
    assert.deepEqual([...core.matmul(new core.Tensor(Float32Array.of(1, 2), [1, 2]), new core.Tensor(Float32Array.of(3, 4), [2, 1])).f32], [11]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
