import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tensor } from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import {
  PthError, ZipError, PickleError, PyObject, ZipReader, crc32, extractStateDict, flattenTensors, inspectPth, isTuple,
  pickleState, readPth, readPthObject, readSafetensors, type ReadMode,
} from '../src/io/index.js';
import { MemorySource } from '../src/io/source.js';
import { fixture as tinyFixture, pthFixture as fixture, needsFixtures } from './util/fixtures.js';
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const PTH = needsFixtures(...['var_tiny.pth', 'torch2.11_cuda_ckpt.pth', 'torch2.11_cuda_sd.pth', 'torch2.11_cuda_expected.safetensors', 'pth_index.json'].map(fixture), tinyFixture('var_state_dict.safetensors'));

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-pth-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

function bitsEqual(a: Tensor, b: Tensor): boolean {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join() || a.size !== b.size) return false;
  const x = new Uint32Array(a.data.buffer, a.data.byteOffset, a.size), y = new Uint32Array(b.data.buffer, b.data.byteOffset, b.size);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function throwsCode(fn: () => unknown, cls: typeof PthError, code: string, msgPart?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)}`);
    assert.equal(e.code, code, e.message);
    if (msgPart) assert.match(e.message, msgPart);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// test-only writers: a pickle emitter and a torch.save-style zip writer (STORED, bit 3, FB padding)

class PickleWriter {
  readonly b: number[] = [];
  private memo = 0;
  /** Memo index used by the latest put(). */
  lastPut = -1;
  raw(...xs: number[]): this { this.b.push(...xs); return this; }
  private u32(v: number): void { this.b.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255); }
  proto(v = 2): this { return this.raw(0x80, v); }
  global(m: string, n: string): this { this.raw(0x63, ...new TextEncoder().encode(`${m}\n${n}\n`)); return this.put(); }
  put(): this { const i = this.memo++; this.lastPut = i; if (i < 256) this.raw(0x71, i); else { this.raw(0x72); this.u32(i); } return this; }
  get(i: number): this { if (i < 256) this.raw(0x68, i); else { this.raw(0x6a); this.u32(i); } return this; }
  str(s: string): this { const e = new TextEncoder().encode(s); this.raw(0x58); this.u32(e.length); this.raw(...e); return this; }
  int(v: number | bigint): this {
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 256) return this.raw(0x4b, v);
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 65536) return this.raw(0x4d, v & 255, v >> 8);
    if (typeof v === 'number' && v >= -(2 ** 31) && v < 2 ** 31) { this.raw(0x4a); this.u32(v >>> 0); return this; }
    let x = BigInt(v);
    const bytes: number[] = [];
    while (x !== 0n && x !== -1n) { bytes.push(Number(x & 255n)); x >>= 8n; }
    if (bytes.length === 0 || ((bytes[bytes.length - 1] & 0x80) !== 0) !== (x === -1n)) bytes.push(x === -1n ? 255 : 0);
    return this.raw(0x8a, bytes.length, ...bytes);
  }
  float(x: number): this { const d = new DataView(new ArrayBuffer(8)); d.setFloat64(0, x, false); return this.raw(0x47, ...new Uint8Array(d.buffer)); }
  mark(): this { return this.raw(0x28); }
  tuple(): this { return this.raw(0x74); }
  emptyTuple(): this { return this.raw(0x29); }
  orderedDict(): this { return this.global('collections', 'OrderedDict').emptyTuple().raw(0x52); }
  /** `_rebuild_tensor_v2((storage pid), offset, size, stride, False, OrderedDict())` */
  tensor(t: { type: string; key: string; numel: number; offset?: number; shape: number[]; stride?: number[]; location?: string }): this {
    const stride = t.stride ?? t.shape.map((_, k) => t.shape.slice(k + 1).reduce((a, d) => a * d, 1));
    this.global('torch._utils', '_rebuild_tensor_v2').mark();
    this.mark().str('storage').global('torch', t.type).str(t.key).str(t.location ?? 'cpu').int(t.numel).tuple().raw(0x51);
    this.int(t.offset ?? 0).mark();
    for (const d of t.shape) this.int(d);
    this.tuple().mark();
    for (const s of stride) this.int(s);
    this.tuple().raw(0x89).orderedDict().tuple().raw(0x52);
    return this;
  }
  stop(): Uint8Array { this.raw(0x2e); return Uint8Array.from(this.b); }
}

interface ZEntry { name: string; data: Uint8Array; method?: number }

/** A zip as torch.save writes it; `zip64Fields` saturates the classic fields and puts the real ones in zip64 records. */
function makeZip(entries: ZEntry[], opts: { zip64Fields?: boolean; zip64Records?: boolean } = {}): Uint8Array {
  const z64 = opts.zip64Fields ?? false, records = (opts.zip64Records ?? true) || z64;
  const out: number[] = [];
  const u16 = (v: number): void => { out.push(v & 255, (v >>> 8) & 255); };
  const u32 = (v: number): void => { out.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255); };
  const u64 = (v: number): void => { u32(v % 2 ** 32); u32(Math.floor(v / 2 ** 32)); };
  const cd: { name: Uint8Array; crc: number; size: number; lho: number; method: number }[] = [];
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    const lho = out.length;
    let pad = 0;
    while ((lho + 30 + name.length + 4 + pad) % 64 !== 0) pad++;
    u32(0x04034b50); u16(20); u16(0x0808); u16(e.method ?? 0); u16(0); u16(0); u32(0); u32(0); u32(0); u16(name.length); u16(4 + pad);
    out.push(...name); u16(0x4246); u16(pad); for (let i = 0; i < pad; i++) out.push(0);
    for (const x of e.data) out.push(x);
    const crc = crc32(e.data);
    u32(0x08074b50); u32(crc); u32(e.data.length); u32(e.data.length);
    cd.push({ name, crc, size: e.data.length, lho, method: e.method ?? 0 });
  }
  const cdOffset = out.length;
  for (const c of cd) {
    u32(0x02014b50); u16(0x031e); u16(z64 ? 45 : 20); u16(0x0808); u16(c.method); u16(0); u16(0); u32(c.crc);
    u32(z64 ? 0xffffffff : c.size); u32(z64 ? 0xffffffff : c.size);
    u16(c.name.length); u16(z64 ? 28 : 0); u16(0); u16(0); u16(0); u32(0); u32(z64 ? 0xffffffff : c.lho);
    out.push(...c.name);
    if (z64) { u16(0x0001); u16(24); u64(c.size); u64(c.size); u64(c.lho); }
  }
  const cdSize = out.length - cdOffset;
  if (records) {
    const z64At = out.length;
    u32(0x06064b50); u64(44); u16(45); u16(45); u32(0); u32(0); u64(cd.length); u64(cd.length); u64(cdSize); u64(cdOffset);
    u32(0x07064b50); u32(0); u64(z64At); u32(1);
  }
  u32(0x06054b50); u16(0); u16(0); u16(z64 ? 0xffff : cd.length); u16(z64 ? 0xffff : cd.length);
  u32(z64 ? 0xffffffff : cdSize); u32(z64 ? 0xffffffff : cdOffset); u16(0);
  return Uint8Array.from(out);
}

function makePth(pkl: Uint8Array, storages: Record<string, Uint8Array>, opts: { prefix?: string; byteorder?: string; zip64Fields?: boolean } = {}): Uint8Array {
  const p = opts.prefix ?? 'archive/';
  const entries: ZEntry[] = [{ name: `${p}data.pkl`, data: pkl }];
  if (opts.byteorder) entries.push({ name: `${p}byteorder`, data: new TextEncoder().encode(opts.byteorder) });
  for (const k of Object.keys(storages).sort()) entries.push({ name: `${p}data/${k}`, data: storages[k] });
  entries.push({ name: `${p}version`, data: new TextEncoder().encode('3\n') });
  return makeZip(entries, opts);
}

/** Entries (name, data) of an existing archive. */
function zipEntries(bytes: Uint8Array): ZEntry[] {
  const z = new ZipReader(MemorySource.of(bytes, ZipError));
  return z.entries.map((e) => ({ name: e.name, data: z.read(e).slice() }));
}

const f32bytes = (xs: number[]): Uint8Array => new Uint8Array(new Float32Array(xs).buffer);

// ---------------------------------------------------------------------------------------------
// the official files

test('var_tiny.pth equals var_state_dict.safetensors bit for bit (same keys, order, dtypes) in every read mode', PTH, () => {
  const want = readSafetensors(tinyFixture('var_state_dict.safetensors'));
  const bytes = new Uint8Array(fs.readFileSync(fixture('var_tiny.pth')));
  const modes: (ReadMode | undefined)[] = [undefined, 'whole', 'per-tensor'];
  for (const src of [fixture('var_tiny.pth'), bytes]) {
    for (const readMode of modes) {
      const got = readPth(src, { readMode });
      assert.deepEqual([...got.keys()], [...want.keys()]);
      for (const [k, t] of want) assert.ok(bitsEqual(got.get(k)!, t), `${k} differs`);
    }
  }
  // the state dict's BUILD state (`_metadata`) is kept on the Map
  const sd = readPth(bytes);
  const meta = (pickleState(sd) as Map<string, unknown>).get('_metadata') as Map<string, Map<string, number>>;
  assert.equal(meta.get('')!.get('version'), 1);
  assert.equal(sd.get('lvl_1L')!.dtype, 'int32');
});

test('F32 tensors are zero-copy views of the file buffer (torch aligns entries to 64 bytes)', PTH, () => {
  const bytes = new Uint8Array(fs.readFileSync(fixture('var_tiny.pth')));
  const sd = readPth(bytes);
  for (const [k, t] of sd) {
    if (t.dtype === 'float32') assert.equal(t.data.buffer, bytes.buffer, `${k} was copied`);
    else assert.notEqual(t.data.buffer, bytes.buffer, `${k} (I64 → int32) must be converted`);
  }
  const whole = readPth(fixture('var_tiny.pth'), { readMode: 'whole' });
  const shared = new Set([...whole.values()].filter((t) => t.dtype === 'float32').map((t) => t.data.buffer));
  assert.equal(shared.size, 1, 'one buffer for the whole file');
  const per = readPth(fixture('var_tiny.pth'), { readMode: 'per-tensor' });
  const own = new Set([...per.values()].map((t) => t.data.buffer));
  assert.equal(own.size, per.size, 'per-tensor reads give each storage its own buffer');
});

test('torch 2.11 CUDA state dict and nested trainer checkpoint equal torch2.11_cuda_expected.safetensors', PTH, () => {
  const want = readSafetensors(fixture('torch2.11_cuda_expected.safetensors'));
  const got = new Map<string, Tensor>();
  for (const [k, t] of readPth(fixture('torch2.11_cuda_sd.pth'))) got.set(`sd/${k}`, t);
  const ckpt = readPthObject(fixture('torch2.11_cuda_ckpt.pth'));
  for (const [k, t] of flattenTensors(ckpt)) got.set(`ckpt/${k}`, t);
  assert.deepEqual([...got.keys()], [...want.keys()]);
  for (const [k, t] of want) assert.ok(bitsEqual(got.get(k)!, t), `${k} differs`);
  // the same from bytes, and through readPthObject for the flat file
  const sdObj = readPthObject(new Uint8Array(fs.readFileSync(fixture('torch2.11_cuda_sd.pth'))));
  for (const [k, t] of flattenTensors(sdObj)) assert.ok(bitsEqual(t, want.get(`sd/${k}`)!), k);
  // the non-tensor parts: ints, floats, bools, None, lists (APPEND), tuples
  const root = ckpt as Map<string, unknown>;
  assert.equal(root.get('epoch'), 1);
  assert.equal(root.get('iter'), 0);
  const opt = ((root.get('trainer') as Map<string, unknown>).get('var_opt') as Map<string, Map<string, unknown>>).get('optimizer')!;
  const groups = opt.get('param_groups') as Map<string, unknown>[];
  assert.ok(Array.isArray(groups) && !isTuple(groups as unknown) && groups.length === 1);
  const g = groups[0];
  assert.equal(g.get('lr'), 0.001);
  assert.equal(g.get('fused'), true);
  assert.equal(g.get('amsgrad'), false);
  assert.equal(g.get('foreach'), null);
  assert.deepEqual(g.get('params'), [0, 1]);
  assert.ok(isTuple(g.get('betas')));
  assert.deepEqual(g.get('betas'), [0.9, 0.95]);
  const state = opt.get('state') as Map<number, Map<string, Tensor>>;
  assert.deepEqual([...state.keys()], [0, 1]);
  assert.deepEqual(state.get(0)!.get('step')!.shape, []);
});

test('select / extractStateDict pick trainer.var_wo_ddp, a path, or the top level', PTH, () => {
  const ckptPath = fixture('torch2.11_cuda_ckpt.pth');
  const names = ['lvl', '1.weight', '1.bias'];
  assert.deepEqual([...readPth(ckptPath).keys()], names, 'auto → trainer/var_wo_ddp');
  assert.deepEqual([...readPth(ckptPath, { select: 'var' }).keys()], names);
  assert.deepEqual([...readPth(ckptPath, { select: 'trainer/var_opt/optimizer/state/1' }).keys()], ['step', 'exp_avg', 'exp_avg_sq']);
  throwsCode(() => readPth(ckptPath, { select: 'trainer/nope' }), PthError, 'pth-select', /trainer\/nope/);
  throwsCode(() => readPth(ckptPath, { select: 'vae' }), PthError, 'pth-not-a-state-dict', /'epoch'/); // no vae_local → top level, which is not one
  throwsCode(() => readPth(ckptPath, { select: 'trainer/var_opt' }), PthError, 'pth-not-a-state-dict', /'scaler'/);
  const obj = readPthObject(ckptPath);
  assert.deepEqual([...extractStateDict(obj, 'var').keys()], names);
  throwsCode(() => extractStateDict(obj, 'vae'), PthError, 'pth-not-a-state-dict');
  const flat = readPthObject(fixture('torch2.11_cuda_sd.pth'));
  assert.deepEqual([...extractStateDict(flat, 'vae').keys()], names, 'a plain state dict is its own var/vae state dict');
  // a checkpoint with both: trainer.vae_local is found
  const w = new PickleWriter().proto();
  // {'trainer': {'var_wo_ddp': {'a': t}, 'vae_local': {'b': t}}, 'args': {'depth': 16}}
  w.raw(0x7d).str('trainer').raw(0x7d).str('var_wo_ddp').orderedDict().str('a').tensor({ type: 'FloatStorage', key: '0', numel: 1, shape: [] }).raw(0x73).raw(0x73);
  w.str('vae_local').orderedDict().str('b').tensor({ type: 'FloatStorage', key: '1', numel: 1, shape: [] }).raw(0x73).raw(0x73).raw(0x73);
  w.str('args').raw(0x7d).str('depth').int(16).raw(0x73).raw(0x73);
  const both = makePth(w.stop(), { 0: f32bytes([1]), 1: f32bytes([2]) });
  assert.equal(readPth(both, { select: 'vae' }).get('b')!.f32[0], 2);
  assert.equal(extractStateDict(readPthObject(both), 'var').get('a')!.f32[0], 1);
});

test('the parse agrees with pth_index.json (entries, offsets, opcodes, globals, every tensor)', PTH, () => {
  const index = JSON.parse(fs.readFileSync(fixture('pth_index.json'), 'utf8')) as Record<string, {
    bytes: number; archive_prefix: string; version_record: string; zip64: boolean; pickle_protocol: number;
    opcodes: Record<string, number>; globals: string[]; storage_types: string[]; locations?: string[];
    small_records?: Record<string, string>;
    entries: { name: string; size: number; data_offset: number; data_offset_mod64: number }[];
    tensors: { path: string; storage_key: string; storage_type: string; storage_numel: number; storage_offset: number; shape: number[]; stride: number[]; requires_grad: boolean }[];
  }>;
  assert.deepEqual(Object.keys(index).sort(), ['torch2.11_cuda_ckpt.pth', 'torch2.11_cuda_sd.pth', 'var_tiny.pth']);
  for (const [file, want] of Object.entries(index)) {
    const info = inspectPth(fixture(file));
    assert.equal(fs.statSync(fixture(file)).size, want.bytes);
    assert.equal(info.prefix, want.archive_prefix, file);
    assert.equal(info.version, want.version_record);
    assert.equal(info.zip64, want.zip64);
    assert.equal(info.protocol, want.pickle_protocol);
    assert.equal(info.byteorder, 'little');
    assert.deepEqual(info.opcodes, want.opcodes, `${file} opcode counts`);
    assert.deepEqual([...info.globals].sort(), want.globals);
    assert.deepEqual([...new Set(info.tensors.map((t) => t.storageType))].sort(), want.storage_types);
    if (want.locations) assert.deepEqual([...new Set(info.tensors.map((t) => t.location))], want.locations);
    assert.deepEqual(info.entries.map((e) => [e.name, e.size, e.dataOffset]), want.entries.map((e) => [e.name, e.size, e.data_offset]), `${file} entries`);
    for (const e of info.entries) assert.equal(e.dataOffset % 64, 0);
    assert.deepEqual(info.tensors.map((t) => ({
      path: t.path, storage_key: t.storageKey, storage_type: t.storageType, storage_numel: t.storageNumel,
      storage_offset: t.storageOffset, shape: t.shape, stride: t.stride, requires_grad: t.requiresGrad,
    })), want.tensors.map((t) => ({
      path: t.path, storage_key: t.storage_key, storage_type: t.storage_type, storage_numel: t.storage_numel,
      storage_offset: t.storage_offset, shape: t.shape, stride: t.stride, requires_grad: t.requires_grad,
    })), `${file} tensors`);
    if (want.small_records) {
      const z = new ZipReader(MemorySource.of(new Uint8Array(fs.readFileSync(fixture(file))), ZipError));
      for (const [name, text] of Object.entries(want.small_records)) assert.equal(new TextDecoder().decode(z.read(z.get(name)!)), text, name);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// hand-built archives

test('zip64 fields (saturated EOCD / central directory + 0x0001 extra) read like the plain ones', PTH, () => {
  const bytes = new Uint8Array(fs.readFileSync(fixture('var_tiny.pth')));
  const entries = zipEntries(bytes);
  const rebuilt = makeZip(entries, { zip64Fields: true });
  const z = new ZipReader(MemorySource.of(rebuilt, ZipError));
  assert.equal(z.zip64, true);
  assert.deepEqual(z.entries.map((e) => [e.name, e.uncompressedSize]), entries.map((e) => [e.name, e.data.length]));
  const a = readPth(bytes), b = readPth(rebuilt);
  for (const [k, t] of a) assert.ok(bitsEqual(b.get(k)!, t), k);
  // and without any zip64 record at all
  const plain = makeZip(entries, { zip64Records: false });
  assert.equal(new ZipReader(MemorySource.of(plain, ZipError)).zip64, false);
  assert.equal(readPth(plain).size, 38);
  // saturated fields without a zip64 locator are an error, not a misread
  const broken = makeZip(entries, { zip64Records: false });
  new DataView(broken.buffer).setUint32(broken.length - 6, 0xffffffff, true); // EOCD cd offset
  throwsCode(() => readPth(broken), ZipError, 'zip-bad-zip64');
});

test('storage offset and strides are honoured; shared storages alias like torch views', () => {
  const w = new PickleWriter().proto().orderedDict().mark();
  w.str('base').tensor({ type: 'FloatStorage', key: '0', numel: 12, shape: [2, 3], offset: 0 });
  w.str('t').tensor({ type: 'FloatStorage', key: '0', numel: 12, shape: [3, 2], stride: [1, 3] }); // base.T
  w.str('off').tensor({ type: 'FloatStorage', key: '0', numel: 12, shape: [2], stride: [4], offset: 2 });
  w.str('tail').tensor({ type: 'FloatStorage', key: '0', numel: 12, shape: [2, 2], offset: 8 });
  w.str('bcast').tensor({ type: 'FloatStorage', key: '0', numel: 12, shape: [3, 2], stride: [0, 1], offset: 10 });
  w.str('empty').tensor({ type: 'FloatStorage', key: '0', numel: 12, shape: [0, 5], stride: [5, 1] });
  w.raw(0x75);
  const storage = f32bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  const sd = readPth(makePth(w.stop(), { 0: storage }));
  assert.deepEqual([...sd.get('base')!.f32], [0, 1, 2, 3, 4, 5]);
  assert.deepEqual([...sd.get('t')!.f32], [0, 3, 1, 4, 2, 5]);
  assert.deepEqual([...sd.get('off')!.f32], [2, 6]);
  assert.deepEqual([...sd.get('tail')!.f32], [8, 9, 10, 11]);
  assert.deepEqual([...sd.get('bcast')!.f32], [10, 11, 10, 11, 10, 11]);
  assert.deepEqual(sd.get('empty')!.shape, [0, 5]);
  // contiguous views of one storage share memory, as in torch
  assert.equal(sd.get('base')!.data.buffer, sd.get('tail')!.data.buffer);
  // a view reaching past its storage is refused
  const bad = new PickleWriter().proto().orderedDict().str('x').tensor({ type: 'FloatStorage', key: '0', numel: 12, shape: [2, 3], stride: [10, 1] }).raw(0x73);
  throwsCode(() => readPth(makePth(bad.stop(), { 0: storage })), PthError, 'pth-tensor-out-of-range', /'x'/);
  const huge = new PickleWriter().proto().orderedDict().str('x').tensor({ type: 'FloatStorage', key: '0', numel: 1, shape: [1 << 20, 1 << 20], stride: [0, 0] }).raw(0x73);
  throwsCode(() => readPth(makePth(huge.stop(), { 0: f32bytes([1]) })), PthError, 'pth-tensor-too-large', /'x'/);
});

test('every storage type converts (F16/BF16/F64 → float32, integers/bool → int32), byteorder big is honoured', () => {
  const dv = (n: number, f: (d: DataView) => void): Uint8Array => { const b = new Uint8Array(n); f(new DataView(b.buffer)); return b; };
  const specs: [string, string, number, Uint8Array, number[]][] = [
    ['f16', 'HalfStorage', 3, dv(6, (d) => { d.setUint16(0, 0x3c00, true); d.setUint16(2, 0xc000, true); d.setUint16(4, 0x7c00, true); }), [1, -2, Infinity]],
    ['bf16', 'BFloat16Storage', 2, dv(4, (d) => { d.setUint16(0, 0x3f80, true); d.setUint16(2, 0xc040, true); }), [1, -3]],
    ['f64', 'DoubleStorage', 2, dv(16, (d) => { d.setFloat64(0, 0.5, true); d.setFloat64(8, -1e-3, true); }), [0.5, Math.fround(-1e-3)]],
    ['i64', 'LongStorage', 2, dv(16, (d) => { d.setBigInt64(0, -7n, true); d.setBigInt64(8, 1n << 30n, true); }), [-7, 2 ** 30]],
    ['i32', 'IntStorage', 2, dv(8, (d) => { d.setInt32(0, -1, true); d.setInt32(4, 5, true); }), [-1, 5]],
    ['i16', 'ShortStorage', 1, dv(2, (d) => d.setInt16(0, -2, true)), [-2]],
    ['i8', 'CharStorage', 2, Uint8Array.of(0xff, 3), [-1, 3]],
    ['u8', 'ByteStorage', 2, Uint8Array.of(0xff, 3), [255, 3]],
    ['bool', 'BoolStorage', 2, Uint8Array.of(1, 0), [1, 0]],
  ];
  const w = new PickleWriter().proto().orderedDict().mark();
  const storages: Record<string, Uint8Array> = {};
  specs.forEach(([name, type, numel, data], i) => { w.str(name).tensor({ type, key: String(i), numel, shape: [numel] }); storages[i] = data; });
  const sd = readPth(makePth(w.raw(0x75).stop(), storages));
  for (const [name, type, , , want] of specs) {
    const t = sd.get(name)!;
    assert.equal(t.dtype, ['HalfStorage', 'BFloat16Storage', 'DoubleStorage'].includes(type) ? 'float32' : 'int32', name);
    assert.deepEqual([...t.data], want, name);
  }
  // big-endian archives: same values from byte-swapped storages
  const be = new PickleWriter().proto().orderedDict().mark()
    .str('f').tensor({ type: 'FloatStorage', key: '0', numel: 2, shape: [2] })
    .str('l').tensor({ type: 'LongStorage', key: '1', numel: 1, shape: [] }).raw(0x75).stop();
  const beF = dv(8, (d) => { d.setFloat32(0, 1.5, false); d.setFloat32(4, -2, false); });
  const beL = dv(8, (d) => d.setBigInt64(0, -3n, false));
  const sdBe = readPth(makePth(be, { 0: beF, 1: beL }, { byteorder: 'big' }));
  assert.deepEqual([...sdBe.get('f')!.f32], [1.5, -2]);
  assert.deepEqual([...sdBe.get('l')!.i32], [-3]);
  throwsCode(() => readPth(makePth(be, { 0: beF, 1: beL }, { byteorder: 'middle' })), PthError, 'pth-bad-record', /byteorder/);
  // an int64 beyond int32 is an error naming the tensor
  const big = new PickleWriter().proto().orderedDict().str('lvl').tensor({ type: 'LongStorage', key: '0', numel: 1, shape: [1] }).raw(0x73).stop();
  throwsCode(() => readPth(makePth(big, { 0: dv(8, (d) => d.setBigInt64(0, 1n << 40n, true)) })), PthError, 'int-out-of-range', /'lvl'.*1099511627776/);
});

test('pickle values: LONG1, floats, bytes via _codecs.encode, Namespace (NEWOBJ + BUILD), protocol-4 strings, cycles, deep nesting', () => {
  const w = new PickleWriter().proto(2).raw(0x7d).put().mark();
  w.str('big').int(2n ** 70n).str('neg').int(-(2n ** 40n)).str('m1').int(-1).str('i32').int(100000);
  w.str('pi').float(Math.PI).str('none').raw(0x4e).str('t').raw(0x88).str('f').raw(0x89);
  w.str('bytes').global('_codecs', 'encode').str('\u00ff\u0001A').str('latin1').raw(0x86, 0x52);
  w.str('ns').global('argparse', 'Namespace').emptyTuple().raw(0x81).raw(0x7d).str('depth').int(16).raw(0x73).raw(0x62);
  w.str('short').raw(0x8c, 2, 0x68, 0x69); // SHORT_BINUNICODE 'hi'
  w.str('self').raw(0x5d).put().get(w.lastPut).raw(0x61); // a list that contains itself
  w.str('tup').raw(0x4b, 1, 0x4b, 2, 0x86);
  w.raw(0x75);
  const obj = readPthObject(makePth(w.stop(), {})) as Map<string, unknown>;
  assert.equal(obj.get('big'), 2n ** 70n);
  assert.equal(obj.get('neg'), -(2 ** 40));
  assert.equal(obj.get('m1'), -1);
  assert.equal(obj.get('i32'), 100000);
  assert.equal(obj.get('pi'), Math.PI);
  assert.equal(obj.get('none'), null);
  assert.equal(obj.get('t'), true);
  assert.equal(obj.get('f'), false);
  assert.deepEqual(obj.get('bytes'), Uint8Array.of(255, 1, 65));
  const ns = obj.get('ns') as PyObject;
  assert.ok(ns instanceof PyObject && ns.name === 'Namespace');
  assert.equal((ns.state as Map<string, number>).get('depth'), 16);
  assert.equal(obj.get('short'), 'hi');
  const self = obj.get('self') as unknown[];
  assert.equal(self[0], self);
  assert.ok(isTuple(obj.get('tup')));
  assert.equal(flattenTensors(obj).size, 0);
  // 200k nested lists: no recursion anywhere (unpickler, tensor walk, flatten)
  const deep = new PickleWriter().proto();
  const depth = 200000;
  for (let i = 0; i < depth; i++) deep.raw(0x5d);
  for (let i = 0; i < depth - 1; i++) deep.raw(0x61);
  const nested = readPthObject(makePth(deep.stop(), {}));
  assert.ok(Array.isArray(nested));
  assert.equal(flattenTensors(nested).size, 0);
  // a dict keyed by a 200k-deep tuple, holding a tensor: paths stay finite, nothing recurses
  const tk = new PickleWriter().proto().raw(0x7d).raw(0x29);
  for (let i = 0; i < depth; i++) tk.raw(0x85);
  tk.tensor({ type: 'FloatStorage', key: '0', numel: 1, shape: [] }).raw(0x73);
  const keyed = flattenTensors(readPthObject(makePth(tk.stop(), { 0: f32bytes([5]) })));
  assert.deepEqual([...keyed.keys()], ['((…))']);
});

test('disallowed GLOBALs are refused with a PthError naming them, before anything runs', () => {
  const cases: [string, string][] = [['os', 'system'], ['builtins', 'eval'], ['posix', 'system'], ['subprocess', 'Popen'], ['torch', 'load'], ['torch._utils', '_rebuild_device_tensor_from_numpy'], ['numpy.core.multiarray', 'scalar']];
  for (const [m, n] of cases) {
    const pkl = new PickleWriter().proto().global(m, n).str('echo pwned').raw(0x85, 0x52).stop();
    throwsCode(() => readPthObject(makePth(pkl, {})), PickleError, 'forbidden-global', new RegExp(`'${m.replace(/\./g, '\\.')}\\.${n}'`));
    assert.ok(PickleError.prototype instanceof PthError);
  }
  // STACK_GLOBAL (protocol 4) goes through the same allow-list
  const p4 = new PickleWriter().proto(4).raw(0x8c, 8, ...new TextEncoder().encode('builtins'), 0x8c, 4, ...new TextEncoder().encode('exec'), 0x93).stop();
  throwsCode(() => readPthObject(makePth(p4, {})), PickleError, 'forbidden-global', /'builtins\.exec'/);
  // unknown storage classes and calls on allowed-but-not-callable globals
  const cplx = new PickleWriter().proto().orderedDict().str('z').tensor({ type: 'ComplexFloatStorage', key: '0', numel: 1, shape: [] }).raw(0x73).stop();
  throwsCode(() => readPthObject(makePth(cplx, { 0: new Uint8Array(8) })), PickleError, 'unsupported-storage', /ComplexFloatStorage/);
  const call = new PickleWriter().proto().global('torch', 'FloatStorage').emptyTuple().raw(0x52).stop();
  throwsCode(() => readPthObject(makePth(call, {})), PickleError, 'not-callable', /torch\.FloatStorage/);
  const op = new PickleWriter().proto().raw(0x69).stop(); // INST
  throwsCode(() => readPthObject(makePth(op, {})), PickleError, 'pickle-opcode', /0x69 'i'/);
});

test('container errors: compressed entries, missing pieces, legacy files, CRC, missing files', () => {
  const pkl = new PickleWriter().proto().orderedDict().str('w').tensor({ type: 'FloatStorage', key: '0', numel: 2, shape: [2] }).raw(0x73).stop();
  const entries: ZEntry[] = [{ name: 'a/data.pkl', data: pkl }, { name: 'a/data/0', data: f32bytes([1, 2]), method: 8 }];
  throwsCode(() => readPth(makeZip(entries)), ZipError, 'zip-compressed', /'a\/data\/0'.*method 8 \(DEFLATE\)/);
  throwsCode(() => readPth(makeZip([{ name: 'a/data.pkl', data: pkl }])), PthError, 'pth-missing-storage', /'w'.*'a\/data\/0'/);
  throwsCode(() => readPth(makeZip([{ name: 'a/data.pkl', data: pkl }, { name: 'a/data/0', data: f32bytes([1]) }])), PthError, 'pth-storage-size', /'w'/);
  throwsCode(() => readPth(makeZip([{ name: 'a/other', data: pkl }])), PthError, 'pth-no-data-pkl', /'a\/other'/);
  throwsCode(() => readPth(makeZip([{ name: 'a/data.pkl', data: pkl }, { name: 'b/data.pkl', data: pkl }])), PthError, 'pth-ambiguous');
  throwsCode(() => readPth(pkl), PthError, 'pth-legacy-magic', /legacy/); // a bare pickle: tried as the pre-1.6 format (pth-legacy.test.ts)
  throwsCode(() => readPth(new Uint8Array(100)), ZipError, 'zip-no-eocd');
  throwsCode(() => readPth(new Uint8Array(3)), ZipError, 'zip-no-eocd');
  const good = makePth(pkl, { 0: f32bytes([1, 2]) });
  throwsCode(() => readPth(good.subarray(0, good.length - 30)), ZipError, 'zip-no-eocd');
  // a flipped byte inside a pickle string: parses unless the CRC is checked
  const flipped = good.slice();
  const at = Buffer.from(flipped).indexOf('OrderedDict');
  flipped[at] ^= 0x20;
  assert.throws(() => readPth(flipped, { verifyCrc: true }), (e: unknown) => e instanceof ZipError && e.code === 'zip-crc');
  throwsCode(() => readPth(flipped), PickleError, 'forbidden-global', /orderedDict/);
  assert.equal(readPth(good, { verifyCrc: true }).size, 1);
  // file paths: named in the message; missing files are typed 'io' errors
  const file = path.join(tmpDir, 'bad.pth');
  fs.writeFileSync(file, pkl);
  throwsCode(() => readPth(file), PthError, 'pth-legacy-magic', /bad\.pth/);
  throwsCode(() => readPth(path.join(tmpDir, 'missing.pth')), PthError, 'io', /missing\.pth/);
  throwsCode(() => readPth(makePth(new PickleWriter().proto().raw(0x4b, 1).stop(), {})), PthError, 'pth-no-state-dict');
});

// ---------------------------------------------------------------------------------------------
// fuzzing

const OPS = [0x80, 0x2e, 0x63, 0x71, 0x72, 0x68, 0x6a, 0x28, 0x29, 0x74, 0x85, 0x86, 0x87, 0x7d, 0x73, 0x75, 0x58, 0x4b, 0x4d, 0x4a,
  0x89, 0x88, 0x4e, 0x52, 0x51, 0x62, 0x47, 0x5d, 0x61, 0x65, 0x8a, 0x8c, 0x8d, 0x81, 0x93, 0x94, 0x95, 0x30, 0x31, 0x32, 0x8b];

function findAll(b: Uint8Array, sig: number): number[] {
  const out: number[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i + 4 <= b.length; i++) if (dv.getUint32(i, true) === sig) out.push(i);
  return out;
}

/** Mutations of a .pth: raw bytes, targeted zip fields, and rebuilt archives with a mutated pickle/storage. */
interface FuzzBase { bytes: Uint8Array; entries: ZEntry[] | null; spots: number[]; pkl: [number, number] }

function mutatePth(fb: FuzzBase, rng: Rng): Uint8Array {
  const { bytes: base, entries, spots: fieldSpots, pkl } = fb;
  const n = base.length;
  const b = base.slice();
  const dv = new DataView(b.buffer);
  const kind = rng.int(10);
  if (kind >= 5 && (kind < 7 || entries === null)) { // in place inside data.pkl (no CRC check by default, so the zip stays valid)
    for (let k = 1 + rng.int(3); k > 0; k--) {
      const i = pkl[0] + rng.int(pkl[1] - pkl[0]);
      const r = rng.int(3);
      if (r === 0) b[i] = OPS[rng.int(OPS.length)];
      else if (r === 1) b[i] = rng.int(256);
      else if (i + 4 <= pkl[1]) dv.setUint32(i, [0xffffffff, 0x7fffffff, rng.nextU32(), 300][rng.int(4)], true);
    }
    return b;
  }
  switch (kind) {
    case 0: return rng.uniform() < 0.5 ? base.slice(0, rng.int(n)) : base.slice(rng.int(n)); // truncation (either end)
    case 1: for (let k = 1 + rng.int(6); k > 0; k--) b[rng.int(n)] ^= 1 << rng.int(8); return b;
    case 2: { // overwrite a zip field (EOCD / zip64 / central / local header) with an absurd value
      const at = fieldSpots[rng.int(fieldSpots.length)];
      const v = [0, 1, 0xffff, 0xffffffff, rng.nextU32(), n, n - 1, 64][rng.int(8)];
      if (at + 4 <= n) { if (rng.uniform() < 0.5) dv.setUint32(at, v >>> 0, true); else dv.setUint16(at, v & 0xffff, true); }
      return b;
    }
    case 3: { const i = rng.int(n), j = rng.int(n); const t = b[i]; b[i] = b[j]; b[j] = t; return b; }
    case 4: { const i = rng.int(n); for (let k = 0; k < 1 + rng.int(32) && i + k < n; k++) b[i + k] = rng.int(256); return b; }
    default: { // rebuild the archive around a mutated data.pkl (or a mutated storage)
      const es = entries!.map((e) => ({ ...e, data: e.data.slice() }));
      const pi = es.findIndex((e) => e.name.endsWith('data.pkl'));
      const pk = rng.uniform() < 0.85 ? es[pi] : es[rng.int(es.length)];
      let d = pk.data;
      for (let k = 1 + rng.int(3); k > 0; k--) {
        const i = rng.int(Math.max(1, d.length));
        switch (rng.int(6)) {
          case 0: d[i] = OPS[rng.int(OPS.length)]; break;
          case 1: d[i] = rng.int(256); break;
          case 2: d = d.slice(0, i); break;
          case 3: d = Uint8Array.from([...d.subarray(0, i), ...d.subarray(i + 1 + rng.int(8))]); break;
          case 4: d = Uint8Array.from([...d.subarray(0, i), OPS[rng.int(OPS.length)], ...Array.from({ length: rng.int(5) }, () => rng.int(256)), ...d.subarray(i)]); break;
          default: if (i + 4 <= d.length) new DataView(d.buffer, d.byteOffset).setUint32(i, [0xffffffff, 0x7fffffff, rng.nextU32(), 1 << 20][rng.int(4)], true);
        }
      }
      pk.data = d;
      return makeZip(es, { zip64Fields: rng.uniform() < 0.3 });
    }
  }
}

test('fuzz: 1000 seeded mutations of .pth files give a valid parse or a PthError, nothing else', PTH, () => {
  const files = ['torch2.11_cuda_ckpt.pth', 'torch2.11_cuda_sd.pth', 'var_tiny.pth'];
  const prepared: FuzzBase[] = files.map((f) => {
    const b = new Uint8Array(fs.readFileSync(fixture(f)));
    const spots: number[] = [];
    for (const s of findAll(b, 0x06054b50)) for (const o of [4, 8, 10, 12, 16, 20]) spots.push(s + o);
    for (const s of findAll(b, 0x06064b50)) for (const o of [4, 24, 32, 40, 48]) spots.push(s + o);
    for (const s of findAll(b, 0x07064b50)) for (const o of [8, 16]) spots.push(s + o);
    for (const s of findAll(b, 0x02014b50)) for (const o of [8, 10, 20, 24, 28, 30, 32, 42]) spots.push(s + o);
    for (const s of findAll(b, 0x04034b50)) for (const o of [6, 8, 26, 28, 30]) spots.push(s + o);
    const info = inspectPth(b);
    const pe = info.entries.find((e) => e.name.endsWith('data.pkl'))!;
    // var_tiny (2.5 MB) only gets in-place mutations: rebuilding it 1000 times would be slow
    return { bytes: b, entries: f === 'var_tiny.pth' ? null : zipEntries(b), spots, pkl: [pe.dataOffset, pe.dataOffset + pe.size] };
  });
  // FUZZ_ITERS / FUZZ_SEED allow longer offline runs; the suite uses the defaults
  const iters = Number(process.env.FUZZ_ITERS ?? 1000);
  const rng = new Rng(Number(process.env.FUZZ_SEED ?? 7331));
  const codes = new Map<string, number>();
  let ok = 0;
  const t0 = Date.now();
  const file = path.join(tmpDir, 'fuzz.pth');
  for (let it = 0; it < iters; it++) {
    const u = rng.uniform();
    const base = prepared[u < 0.45 ? 0 : u < 0.9 ? 1 : 2];
    const m = mutatePth(base, rng);
    const viaFile = it % 25 === 0;
    if (viaFile) fs.writeFileSync(file, m);
    try {
      const obj = viaFile ? readPthObject(file, { readMode: 'per-tensor' }) : readPthObject(m);
      for (const [, t] of flattenTensors(obj)) assert.equal(t.size, t.shape.reduce((a, d) => a * d, 1));
      if (it % 2 === 0) inspectPth(m);
      ok++;
    } catch (e) {
      if (!(e instanceof PthError)) assert.fail(`iteration ${it}: ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
  }
  const ms = Date.now() - t0;
  if (process.env.FUZZ_STATS) console.log(ok, ms, [...codes].sort((a, b) => b[1] - a[1]));
  assert.ok(ok > 20, `some mutations should still parse (got ${ok})`);
  assert.ok(codes.size >= 15, `mutations should reach many checks, got ${[...codes.keys()].join(', ')}`);
});
