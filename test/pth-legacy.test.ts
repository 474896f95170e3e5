import { test } from 'node:test';
import './util/setup.js';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Tensor } from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { PthError, flattenTensors, inspectPth, readPth, readPthObject } from '../src/io/index.js';
import { LEGACY_MAGIC_NUMBER, parseLegacyPth } from '../src/io/pth-legacy.js';
import { loadVar } from '../src/var/load.js';
import { pthFixture as fixture, fixtureOrSkip } from './util/fixtures.js';

const read = (f: string): Uint8Array => new Uint8Array(fs.readFileSync(fixture(f)));

function bitsEqual(a: Tensor, b: Tensor): boolean {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join() || a.size !== b.size) return false;
  const x = new Uint32Array(Float32Array.from(a.data).buffer), y = new Uint32Array(Float32Array.from(b.data).buffer);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

test('legacy views_legacy.pth: views, strides, F16 and a 0-dim I64, exactly', (t) => {
  if (!fixtureOrSkip(t, fixture('views_legacy.pth'))) return;
  for (const src of [fixture('views_legacy.pth'), read('views_legacy.pth')]) {
    const obj = readPthObject(src) as Map<string, Tensor>;
    assert.deepEqual([...obj.keys()], ['whole', 'view', 'strided', 'half', 'step']);
    const whole = obj.get('whole')!, view = obj.get('view')!, strided = obj.get('strided')!;
    assert.deepEqual(whole.shape, [24]);
    assert.deepEqual([...whole.data], Array.from({ length: 24 }, (_, i) => i));
    assert.deepEqual(view.shape, [3, 4]);
    assert.deepEqual([...view.data], Array.from({ length: 12 }, (_, i) => i + 4)); // whole[4:16]
    assert.deepEqual(strided.shape, [6, 4]);
    // whole.view(4, 6).t(): strided[i, j] = whole[6j + i]
    assert.deepEqual([...strided.data], Array.from({ length: 24 }, (_, k) => 6 * (k % 4) + Math.floor(k / 4)));
    assert.equal(obj.get('half')!.dtype, 'float32');
    assert.deepEqual([...obj.get('half')!.data], [1.5, -2.25]);
    const step = obj.get('step')!;
    assert.deepEqual(step.shape, []);
    assert.equal(step.dtype, 'int32');
    assert.deepEqual([...step.data], [7]);
  }
  const info = inspectPth(read('views_legacy.pth'));
  assert.deepEqual(info.tensors.map((x) => [x.path, x.storageType, x.storageOffset, x.shape.join('x'), x.stride.join(',')]), [
    ['whole', 'FloatStorage', 0, '24', '1'], ['view', 'FloatStorage', 4, '3x4', '4,1'], ['strided', 'FloatStorage', 0, '6x4', '1,6'],
    ['half', 'HalfStorage', 0, '2', '1'], ['step', 'LongStorage', 0, '', ''],
  ]);
  assert.equal(info.entries.length, 3); // three storages: whole's is shared by view and strided
});

test('legacy var_tiny_legacy.pth equals var_tiny.pth bit for bit (same keys and order), and loadVar gives the same model', (t) => {
  if (!fixtureOrSkip(t, fixture('var_tiny_legacy.pth'), fixture('var_tiny.pth'))) return;
  const legacy = readPth(fixture('var_tiny_legacy.pth'));
  const zip = readPth(fixture('var_tiny.pth'));
  assert.equal(legacy.size, 38);
  assert.deepEqual([...legacy.keys()], [...zip.keys()]);
  for (const [k, v] of zip) assert.ok(bitsEqual(legacy.get(k)!, v), k);
  const a = loadVar(fixture('var_tiny_legacy.pth')), b = loadVar(fixture('var_tiny.pth'));
  assert.deepEqual(a.config, b.config);
  const pa = flattenTensors(legacy), pb = flattenTensors(zip);
  assert.equal(pa.size, pb.size);
});

test('legacy: parseLegacyPth checks the magic number, version and storage records', (t) => {
  if (!fixtureOrSkip(t, fixture('views_legacy.pth'))) return;
  assert.equal(LEGACY_MAGIC_NUMBER, 0x1950a86a20f9469cfc6cn);
  const b = read('views_legacy.pth');
  const code = (m: Uint8Array): string => {
    try { readPthObject(m); return 'ok'; } catch (e) { assert.ok(e instanceof PthError, String(e)); return e.code; }
  };
  const badMagic = b.slice(); badMagic[5] ^= 1;
  assert.equal(code(badMagic), 'pth-legacy-magic');
  const badVersion = b.slice(); badVersion[b.indexOf(0x4d, 16) + 1] ^= 1; // M 0x3e9 → 0x3e8
  assert.equal(code(badVersion), 'pth-legacy-version');
  assert.equal(code(b.slice(0, b.length - 1)), 'pth-legacy-truncated'); // last storage short by one byte
  const huge = b.slice(); new DataView(huge.buffer).setUint32(b.length - 16, 0xffffffff, true); // the last count's high word
  assert.equal(code(huge), 'pth-legacy-truncated');
  assert.throws(() => parseLegacyPth(b.slice(0, 14), { findGlobal() { throw new Error(); }, reduce() { throw new Error(); }, newObj() { throw new Error(); }, build() { throw new Error(); }, persistentLoad() { throw new Error(); } }),
    (e: unknown) => e instanceof PthError);
});

test('fuzz: 1000 seeded mutations of legacy .pth files give a valid parse or a PthError, nothing else', (t) => {
  if (!fixtureOrSkip(t, fixture('views_legacy.pth'), fixture('var_tiny_legacy.pth'))) return;
  const bases = [read('views_legacy.pth'), read('var_tiny_legacy.pth')];
  // var_tiny_legacy: mutate only the pickles and the first storage headers (the first 12 kB), a cheap copy of the rest
  const rng = new Rng(Number(process.env.FUZZ_SEED ?? 2024));
  const iters = Number(process.env.FUZZ_ITERS ?? 1000);
  const codes = new Map<string, number>();
  let ok = 0;
  for (let it = 0; it < iters; it++) {
    const base = bases[rng.uniform() < 0.8 ? 0 : 1];
    const span = Math.min(base.length, 12000);
    let b = base.slice();
    const dv = new DataView(b.buffer);
    switch (rng.int(6)) {
      case 0: b = b.slice(0, rng.int(b.length)); break; // truncation
      case 1: for (let k = 1 + rng.int(6); k > 0; k--) b[rng.int(span)] ^= 1 << rng.int(8); break; // bit flips
      case 2: { const i = rng.int(span - 4); dv.setUint32(i, [0xffffffff, 0x7fffffff, rng.nextU32(), 1 << 20, 0][rng.int(5)], true); break; } // absurd lengths
      case 3: { const i = rng.int(span); b[i] = rng.int(256); break; }
      case 4: { // storage offsets / sizes: overwrite a small int operand (K) with a large one
        const ks: number[] = [];
        for (let i = 0; i < span - 1; i++) if (b[i] === 0x4b) ks.push(i);
        const i = ks[rng.int(ks.length)];
        b[i + 1] = [255, 24, 25, 100, 0][rng.int(5)];
        break;
      }
      default: { const i = rng.int(span), j = rng.int(span); const x = b[i]; b[i] = b[j]; b[j] = x; }
    }
    try {
      const obj = readPthObject(b);
      for (const [, x] of flattenTensors(obj)) assert.equal(x.size, x.shape.reduce((a, d) => a * d, 1));
      if (it % 2 === 0) inspectPth(b);
      ok++;
    } catch (e) {
      if (!(e instanceof PthError)) assert.fail(`iteration ${it}: ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
  }
  if (process.env.FUZZ_STATS) console.log(ok, [...codes].sort((a, b) => b[1] - a[1]));
  assert.ok(ok > 20, `some mutations should still parse (got ${ok})`);
  assert.ok(codes.size >= 8, `mutations should reach many checks, got ${[...codes.keys()].join(', ')}`);
});
