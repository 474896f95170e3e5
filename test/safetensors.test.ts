import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tensor, tensor, intTensor } from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import {
  SafetensorsError, encodeSafetensors, readSafetensors, readSafetensorsFile, readSafetensorsHeader, writeSafetensors,
  type ReadMode,
} from '../src/io/index.js';
import { fixture, needsFixtures } from './util/fixtures.js';
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(fixture('var_state_dict.safetensors'));

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-st-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

/** A safetensors file from a raw header text and data bytes (the header is not padded unless asked). */
function rawFile(header: string, data: Uint8Array | number[] = [], pad = 0): Uint8Array {
  const json = new TextEncoder().encode(header + ' '.repeat(pad));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data instanceof Uint8Array ? data : Uint8Array.from(data), 8 + json.length);
  return out;
}

function u16le(values: number[]): Uint8Array {
  const b = new Uint8Array(values.length * 2), dv = new DataView(b.buffer);
  values.forEach((v, i) => dv.setUint16(2 * i, v, true));
  return b;
}

function bitsEqual(a: Tensor, b: Tensor): boolean {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join() || a.size !== b.size) return false;
  const x = new Uint32Array(a.data.buffer, a.data.byteOffset, a.size), y = new Uint32Array(b.data.buffer, b.data.byteOffset, b.size);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function throwsCode(fn: () => unknown, code: string, msgPart?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (msgPart) assert.match(e.message, msgPart);
    return true;
  });
}

test('round trip F32 / I32 / I64 with metadata, order kept (also integer-like names), all read modes', () => {
  const rng = new Rng(1);
  const tensors = new Map<string, Tensor>([
    ['w', new Tensor(Float32Array.from({ length: 12 }, () => rng.normal()), [3, 4])],
    ['10', tensor([-Infinity, NaN, -0, 3.5], [2, 2])],
    ['2', intTensor([0, -1, 2147483647, -2147483648, 7], [5])],
    ['scalar', tensor([42], [])],
    ['empty', new Tensor(new Float32Array(0), [0, 3])],
    ['a.b', tensor([1, 2, 3])],
  ]);
  const meta = { format: 'pt', config: '{"depth": 2}' };
  const bytes = encodeSafetensors(tensors, meta);
  const hlen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + hlen) % 8, 0, 'data section is 8-aligned');
  const file = path.join(tmpDir, 'rt.safetensors');
  writeSafetensors(file, tensors, meta);
  assert.deepEqual(new Uint8Array(fs.readFileSync(file)), bytes, 'writeSafetensors and encodeSafetensors agree');
  const modes: (ReadMode | undefined)[] = [undefined, 'whole', 'per-tensor'];
  for (const src of [bytes, file]) {
    for (const readMode of modes) {
      const { tensors: got, metadata } = readSafetensorsFile(src, { readMode });
      assert.deepEqual(metadata, meta);
      assert.deepEqual([...got.keys()], [...tensors.keys()]);
      for (const [k, t] of tensors) assert.ok(bitsEqual(got.get(k)!, t), `tensor ${k} differs`);
    }
  }
  // I64 on request
  const b64 = encodeSafetensors(new Map([['idx', intTensor([-3, 0, 5])]]), undefined, { intDtype: 'I64' });
  const h = readSafetensorsHeader(b64);
  assert.equal(h.entries[0].dtype, 'I64');
  assert.equal(h.metadata, null);
  assert.deepEqual([...readSafetensors(b64).get('idx')!.i32], [-3, 0, 5]);
  // records work too
  assert.deepEqual([...readSafetensors(encodeSafetensors({ x: tensor([1]) })).keys()], ['x']);
});

test('F32 data is a zero-copy view when aligned, a copy when not', TINY, () => {
  const aligned = encodeSafetensors(new Map([['x', tensor([1, 2, 3])]]));
  const x = readSafetensors(aligned).get('x')!;
  assert.equal(x.data.buffer, aligned.buffer);
  // header of 2 + 4k+2 bytes → data section at an address ≡ 2 (mod 4)
  const f = new Float32Array([1.5, -2.25]);
  let header = '{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  while ((8 + header.length) % 4 !== 2) header += ' ';
  const unaligned = rawFile(header, new Uint8Array(f.buffer));
  const y = readSafetensors(unaligned).get('x')!;
  assert.notEqual(y.data.buffer, unaligned.buffer);
  assert.deepEqual([...y.f32], [1.5, -2.25]);
  // a whole-file read from disk: every F32 tensor views one shared buffer
  const file = fixture('var_state_dict.safetensors');
  const whole = readSafetensors(file, { readMode: 'whole' });
  const buffers = new Set([...whole.values()].filter((t) => t.dtype === 'float32').map((t) => t.data.buffer));
  assert.equal(buffers.size, 1);
});

test('F16 and BF16 decode known bit patterns; integer dtypes convert with range checks', () => {
  const f16 = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3555];
  const f16Want = [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, -Infinity, NaN, -0, 0.333251953125];
  const bf16 = [0x3f80, 0xc040, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x4049, 0x8000];
  const bf16Want = [1, -3, Infinity, -Infinity, NaN, 2 ** -133, 3.140625, -0];
  const a = u16le(f16), b = u16le(bf16);
  const i64 = new Uint8Array(16);
  new DataView(i64.buffer).setBigInt64(0, -5n, true);
  new DataView(i64.buffer).setBigInt64(8, 2147483647n, true);
  const u8 = Uint8Array.of(0, 255, 7), bool = Uint8Array.of(0, 1, 2);
  const i16 = new Uint8Array(4); new DataView(i16.buffer).setInt16(0, -300, true); new DataView(i16.buffer).setInt16(2, 300, true);
  const f64 = new Uint8Array(new Float64Array([0.1, -1e300]).buffer);
  const data = [a, b, i64, u8, bool, i16, f64];
  let off = 0;
  const spec: [string, string, number[]][] = [['h', 'F16', [f16.length]], ['bf', 'BF16', [2, 4]], ['l', 'I64', [2]], ['u', 'U8', [3]], ['q', 'BOOL', [3]], ['s', 'I16', [2]], ['d', 'F64', [2]]];
  const parts = spec.map(([n, dt, sh], i) => {
    const s = `"${n}":{"dtype":"${dt}","shape":${JSON.stringify(sh)},"data_offsets":[${off},${off + data[i].length}]}`;
    off += data[i].length;
    return s;
  });
  const all = new Uint8Array(off);
  let p = 0;
  for (const d of data) { all.set(d, p); p += d.length; }
  const got = readSafetensors(rawFile(`{${parts.join(',')}}`, all));
  const same = (x: number, y: number): boolean => Object.is(x, y);
  const h = got.get('h')!.f32;
  f16Want.forEach((w, i) => assert.ok(same(h[i], w), `F16 0x${f16[i].toString(16)} → ${h[i]}, want ${w}`));
  const bfv = got.get('bf')!;
  assert.deepEqual(bfv.shape, [2, 4]);
  bf16Want.forEach((w, i) => assert.ok(same(bfv.f32[i], Math.fround(w)), `BF16 0x${bf16[i].toString(16)} → ${bfv.f32[i]}, want ${w}`));
  assert.deepEqual([...got.get('l')!.i32], [-5, 2147483647]);
  assert.deepEqual([...got.get('u')!.i32], [0, 255, 7]);
  assert.deepEqual([...got.get('q')!.i32], [0, 1, 1]);
  assert.deepEqual([...got.get('s')!.i32], [-300, 300]);
  assert.deepEqual([...got.get('d')!.f32], [Math.fround(0.1), -Infinity]);
  // I64 beyond int32 → typed error naming the tensor and the value
  const big = new Uint8Array(8);
  new DataView(big.buffer).setBigInt64(0, 2147483648n, true);
  throwsCode(() => readSafetensors(rawFile('{"lvl":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', big)), 'int-out-of-range', /'lvl'.*2147483648/);
});

test('the var-tiny fixture reads with its metadata, in header order', TINY, () => {
  const file = fixture('var_state_dict.safetensors');
  const { tensors, metadata } = readSafetensorsFile(file);
  assert.equal(tensors.size, 38);
  assert.equal(JSON.parse(metadata!.config).depth, 2);
  const keys = [...tensors.keys()];
  assert.deepEqual(keys.slice(0, 3), ['pos_start', 'pos_1LC', 'lvl_1L']);
  const lvl = tensors.get('lvl_1L')!;
  assert.equal(lvl.dtype, 'int32');
  assert.deepEqual([...lvl.i32], [0, 1, 1, 1, 1, ...new Array(9).fill(2), ...new Array(16).fill(3)]);
  const mask = tensors.get('attn_bias_for_masking')!.f32;
  assert.equal(mask[1], -Infinity);
  const per = readSafetensors(file, { readMode: 'per-tensor' });
  for (const [k, t] of tensors) assert.ok(bitsEqual(per.get(k)!, t), k);
  const hdr = readSafetensorsHeader(file);
  assert.deepEqual(hdr.entries.map((e) => e.name), keys);
});

test('validation: each malformed header is a SafetensorsError with a clear code', () => {
  const ok = '{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  const d8 = new Uint8Array(8);
  throwsCode(() => readSafetensors(new Uint8Array(5)), 'truncated');
  const huge = rawFile(ok, d8);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
  throwsCode(() => readSafetensors(huge), 'header-too-large');
  const past = rawFile(ok, d8);
  new DataView(past.buffer).setBigUint64(0, BigInt(past.length), true);
  throwsCode(() => readSafetensors(past), 'header-out-of-range');
  throwsCode(() => readSafetensors(rawFile('{"t":', d8)), 'bad-header', /JSON/);
  throwsCode(() => readSafetensors(rawFile('[1,2]', d8)), 'bad-header', /object/);
  const badUtf8 = rawFile('{"t":1}');
  badUtf8[10] = 0xff;
  throwsCode(() => readSafetensors(badUtf8), 'bad-header', /UTF-8/);
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}', d8)), 'unknown-dtype', /'t'.*Q7/);
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}', d8)), 'unsupported-dtype');
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', d8)), 'bad-shape', /'t'/);
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}', d8)), 'bad-shape');
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', d8)), 'bad-offsets', /begin > end/);
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', d8)), 'bad-offsets');
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}', d8)), 'offsets-out-of-range', /'t'/);
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', d8)), 'size-mismatch', /'t'.*12 bytes/);
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F32","shape":[1e15, 1e15],"data_offsets":[0,8]}}', d8)), 'size-mismatch');
  throwsCode(() => readSafetensors(rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', d8)), 'overlap', /'a'.*'b'/);
  throwsCode(() => readSafetensors(rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', d8)), 'duplicate-key');
  throwsCode(() => readSafetensors(rawFile('{"__metadata__":{"k":1}}')), 'bad-metadata', /'k'/);
  throwsCode(() => readSafetensors(rawFile('{"t":[1]}')), 'bad-entry');
  // the header is validated before the data: a header promising 1 TB in a 100-byte file allocates nothing
  throwsCode(() => readSafetensors(rawFile('{"t":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]}}')), 'offsets-out-of-range');
  // hostile nesting is reported, not a stack overflow
  const deep = '['.repeat(100000) + ']'.repeat(100000);
  throwsCode(() => readSafetensors(rawFile(`{"t":{"dtype":"F32","shape":${deep},"data_offsets":[0,8]}}`, d8)), 'bad-shape');
  throwsCode(() => readSafetensors(rawFile(`{"t":{"dtype":"F32","shape":[2],"data_offsets":${deep}}}`, d8)), 'bad-offsets');
  // padded headers and empty files are fine
  assert.equal(readSafetensors(rawFile('{}', [], 6)).size, 0);
  // the file path appears in the message; a missing file is a typed 'io' error
  const file = path.join(tmpDir, 'bad.safetensors');
  fs.writeFileSync(file, rawFile('{"t":', d8));
  throwsCode(() => readSafetensors(file), 'bad-header', /bad\.safetensors/);
  throwsCode(() => readSafetensors(path.join(tmpDir, 'missing.safetensors')), 'io', /missing/);
  // writer errors
  throwsCode(() => encodeSafetensors(new Map([['__metadata__', tensor([1])]])), 'bad-name');
  throwsCode(() => encodeSafetensors(new Map([['x', [1, 2] as unknown as Tensor]])), 'bad-tensor', /'x'/);
});

test('atomic write: a failure mid-write leaves the previous file intact and no temp file', () => {
  const file = path.join(tmpDir, 'atomic.safetensors');
  const old = new Map([['v', tensor([1, 2, 3])]]);
  writeSafetensors(file, old, { gen: '1' });
  const before = fs.readFileSync(file);
  const big = new Map<string, Tensor>([
    ['a', new Tensor(new Float32Array(1 << 16).fill(7), [1 << 16])],
    ['b', new Tensor(new Float32Array(1 << 16).fill(8), [1 << 16])],
  ]);
  let calls = 0;
  assert.throws(() => writeSafetensors(file, big, { gen: '2' }, {
    onProgress: (name, done, total) => {
      calls++;
      assert.ok(done <= total);
      if (name === 'a') throw new Error('simulated disk failure');
    },
  }), /simulated disk failure/);
  assert.equal(calls, 1);
  assert.deepEqual(fs.readFileSync(file), before, 'old file untouched');
  assert.deepEqual(fs.readdirSync(tmpDir).filter((f) => f.includes('.tmp-')), [], 'temp file removed');
  assert.equal(readSafetensorsFile(file).metadata!.gen, '1');
  // and a successful write replaces it
  writeSafetensors(file, big, { gen: '2' });
  assert.equal(readSafetensorsFile(file).metadata!.gen, '2');
  assert.equal(readSafetensors(file).get('b')!.f32[100], 8);
});

// ---------------------------------------------------------------------------------------------
// fuzzing

/** A small file with every dtype family, as the mutation base. */
function fuzzBase(): Uint8Array {
  const parts: [string, string, number[], Uint8Array][] = [
    ['w', 'F32', [2, 3], new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer)],
    ['h', 'F16', [3], u16le([0x3c00, 0x7bff, 0x8001])],
    ['b', 'BF16', [2], u16le([0x3f80, 0xff80])],
    ['lvl', 'I64', [2], new Uint8Array(new BigInt64Array([3n, -1n]).buffer)],
    ['i', 'I32', [1], new Uint8Array(new Int32Array([-9]).buffer)],
    ['m', 'BOOL', [2], Uint8Array.of(1, 0)],
  ];
  let off = 0;
  const hdr = parts.map(([n, dt, sh, d]) => { const s = `"${n}":{"dtype":"${dt}","shape":${JSON.stringify(sh)},"data_offsets":[${off},${off + d.length}]}`; off += d.length; return s; });
  const data = new Uint8Array(off);
  let p = 0;
  for (const [, , , d] of parts) { data.set(d, p); p += d.length; }
  return rawFile(`{"__metadata__":{"k":"v"},${hdr.join(',')}}`, data, 3);
}

const ABSURD = [0, 1, 2, 7, 8, 0xffffffff, 2 ** 32, 2 ** 53 - 1, 2 ** 53 + 2, 1e300, -1, -1e300, 0.5, NaN];

function mutate(base: Uint8Array, rng: Rng): Uint8Array {
  const n = base.length;
  const hlen = Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
  const kind = rng.int(9);
  let b = base.slice();
  switch (kind) {
    case 0: return base.slice(0, rng.int(n)); // truncation
    case 1: for (let k = 1 + rng.int(8); k > 0; k--) b[rng.int(n)] ^= 1 << rng.int(8); return b; // bit flips
    case 2: { // absurd header length
      const v = [0n, 1n, 2n, BigInt(n - 8), BigInt(n - 7), BigInt(hlen - 1), BigInt(hlen + 1), 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n, BigInt(rng.nextU32())][rng.int(11)];
      new DataView(b.buffer).setBigUint64(0, v, true);
      return b;
    }
    case 3: { // same-length edit of a header character (digits, brackets, quotes)
      const alphabet = '0123456789{}[]":,-.eE ';
      for (let k = 1 + rng.int(3); k > 0; k--) b[8 + rng.int(hlen)] = alphabet.charCodeAt(rng.int(alphabet.length));
      return b;
    }
    case 4: { // swap two bytes / two spans
      const i = rng.int(n), j = rng.int(n), len = 1 + rng.int(8);
      for (let k = 0; k < len && i + k < n && j + k < n; k++) { const t = b[i + k]; b[i + k] = b[j + k]; b[j + k] = t; }
      return b;
    }
    case 5: { // random overwrite of a span
      const i = rng.int(n), len = 1 + rng.int(16);
      for (let k = 0; k < len && i + k < n; k++) b[i + k] = rng.int(256);
      return b;
    }
    case 6: { // insert or delete bytes (shifts everything after)
      const i = rng.int(n), len = 1 + rng.int(8);
      if (rng.uniform() < 0.5) return Uint8Array.from([...b.subarray(0, i), ...b.subarray(Math.min(n, i + len))]);
      return Uint8Array.from([...b.subarray(0, i), ...Array.from({ length: len }, () => rng.int(256)), ...b.subarray(i)]);
    }
    default: { // semantic: re-serialise the header with one field replaced by an absurd value
      const text = new TextDecoder().decode(b.subarray(8, 8 + hlen));
      const obj = JSON.parse(text) as Record<string, Record<string, unknown>>;
      const names = Object.keys(obj).filter((k) => k !== '__metadata__');
      const e = obj[names[rng.int(names.length)]];
      const pick = (): unknown => ABSURD[rng.int(ABSURD.length)];
      switch (rng.int(6)) {
        case 0: e.data_offsets = [pick(), pick()]; break;
        case 1: (e.data_offsets as unknown[])[rng.int(2)] = pick(); break;
        case 2: e.shape = Array.from({ length: rng.int(4) }, pick); break;
        case 3: e.dtype = ['F32', 'F16', 'BF16', 'I64', 'U64', 'F64', 'U8', 'BOOL', 'F8_E5M2', 'XX', 7][rng.int(11)]; break;
        case 4: delete e[['dtype', 'shape', 'data_offsets'][rng.int(3)]]; break;
        default: obj.__metadata__ = [{ k: 1 }, 'x', null, { a: 'b' }][rng.int(4)] as Record<string, unknown>;
      }
      const json = new TextEncoder().encode(JSON.stringify(obj));
      const out = new Uint8Array(8 + json.length + (n - 8 - hlen));
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(json, 8);
      out.set(b.subarray(8 + hlen), 8 + json.length);
      return out;
    }
  }
}

test('fuzz: 1000 seeded mutations give a valid parse or a SafetensorsError, nothing else', () => {
  const base = fuzzBase();
  assert.equal(readSafetensors(base).size, 6);
  // FUZZ_ITERS / FUZZ_SEED allow longer offline runs; the suite uses the defaults
  const iters = Number(process.env.FUZZ_ITERS ?? 1000);
  const rng = new Rng(Number(process.env.FUZZ_SEED ?? 20240613));
  const codes = new Map<string, number>();
  let ok = 0;
  const t0 = Date.now();
  for (let it = 0; it < iters; it++) {
    const m = mutate(base, rng);
    try {
      const got = readSafetensors(m);
      for (const [, t] of got) assert.equal(t.size, t.shape.reduce((a, d) => a * d, 1));
      ok++;
    } catch (e) {
      if (!(e instanceof SafetensorsError)) {
        assert.fail(`iteration ${it}: ${e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)}`);
      }
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
  }
  const ms = Date.now() - t0;
  if (process.env.FUZZ_STATS) console.log(ok, ms, [...codes]);
  assert.ok(ms < 10 * iters, `fuzz took ${ms} ms`);
  assert.ok(ok > 20, `some mutations should still parse (got ${ok})`);
  assert.ok(codes.size >= 10, `mutations should reach many checks, got ${[...codes.keys()].join(', ')}`);
});
