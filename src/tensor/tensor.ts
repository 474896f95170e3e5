/**
 * The tensor: a contiguous, row-major Float32Array (or Int32Array for indices) with a shape,
 * and the reverse-mode autodiff engine.
 *
 * Design (after tinygrad/micrograd): every op computes its result eagerly; when gradients are
 * enabled and an input requires grad, the result also records a `GradNode` holding the inputs
 * and a closure that maps the output gradient to input gradients. `backward()` walks the graph
 * once in reverse topological order, then drops the graph so nothing outlives the step.
 * Under `noGrad` no closure is created at all, so inference pays nothing for autodiff.
 */

import { backend } from '../backend/index.js';

/**
 * 'bfloat16': a weight matrix stored as bf16 bit patterns (Uint16Array), for inference only (read by
 * `linear` / `linearInto` and nothing else: `f32` throws for it; src/tensor/ops/bf16.ts).
 */
export type DType = 'float32' | 'int32' | 'bfloat16';
export type Data = Float32Array | Int32Array | Uint16Array;

export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /** Gradients of the inputs (null where not needed), given the gradient of the output. */
  backward(gradOut: Float32Array): (Float32Array | null)[];
}

let gradEnabled = true;
let liveCount = 0;
const registry = new FinalizationRegistry<void>(() => { liveCount--; });

/** Number of tensors not yet garbage collected (for leak tests; needs --expose-gc to be exact). */
export function liveTensors(): number { return liveCount; }

export function isGradEnabled(): boolean { return gradEnabled; }

/** Run `fn` with gradient recording off (inference). Nested calls are fine. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try { return fn(); } finally { gradEnabled = prev; }
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`invalid shape [${shape.join(', ')}]: dimensions must be non-negative integers`);
  }
}

export class Tensor {
  readonly shape: readonly number[];
  readonly data: Data;
  readonly dtype: DType;
  requiresGrad: boolean;
  grad: Tensor | null = null;
  node: GradNode | null = null;
  /** Optional name (parameters carry their state-dict key). */
  name?: string;

  constructor(data: Data, shape: readonly number[], requiresGrad = false) {
    checkShape(shape);
    if (data.length !== sizeOf(shape)) {
      throw new RangeError(`data has ${data.length} elements but shape [${shape.join(', ')}] needs ${sizeOf(shape)}`);
    }
    this.data = data;
    this.shape = Object.freeze(shape.slice());
    this.dtype = data instanceof Int32Array ? 'int32' : data instanceof Uint16Array ? 'bfloat16' : 'float32';
    if (requiresGrad && this.dtype !== 'float32') throw new TypeError('only float32 tensors can require grad');
    this.requiresGrad = requiresGrad;
    liveCount++;
    registry.register(this, undefined);
  }

  get size(): number { return this.data.length; }
  get ndim(): number { return this.shape.length; }

  /** Float32 view of the data; throws for int32 tensors. */
  get f32(): Float32Array {
    if (!(this.data instanceof Float32Array)) throw new TypeError(`expected a float32 tensor, got ${this.dtype}`);
    return this.data;
  }

  /** Int32 view of the data; throws for float32 tensors. */
  get i32(): Int32Array {
    if (!(this.data instanceof Int32Array)) throw new TypeError(`expected an int32 tensor, got ${this.dtype}`);
    return this.data;
  }

  /** A leaf tensor sharing this one's data, cut from the graph. */
  detach(): Tensor { return new Tensor(this.data, this.shape); }

  toString(): string { return `Tensor(${this.dtype}, [${this.shape.join(', ')}])`; }

  /**
   * Reverse-mode autodiff from this tensor. `gradOut` defaults to ones (so a scalar loss
   * needs no argument). Gradients accumulate into `.grad` of leaves that require grad.
   * The graph is released afterwards.
   */
  backward(gradOut?: Float32Array): void {
    if (!this.requiresGrad) throw new Error('backward() on a tensor that does not require grad');
    const order = topoSort(this);
    const grads = new Map<Tensor, Float32Array>();
    // arrays we may accumulate into in place; anything else an op hands back is copied first
    const owned = new Set<Float32Array>();
    const root = gradOut ? gradOut.slice() : new Float32Array(this.size).fill(1);
    if (root.length !== this.size) throw new RangeError(`backward: gradient has ${root.length} elements, tensor has ${this.size}`);
    grads.set(this, root);
    owned.add(root);
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      if (!g) continue;
      if (t.node) {
        const ins = t.node.inputs;
        const gs = t.node.backward(g);
        // t's own gradient g dies after this node, so one input may take it over without a copy
        let gTaken = false;
        for (let j = 0; j < ins.length; j++) {
          const inp = ins[j], gi = gs[j];
          if (!gi || !inp.requiresGrad) continue;
          const prev = grads.get(inp);
          if (prev) addInto(prev, gi);
          else {
            let own = gi;
            if (gi === g && !gTaken) gTaken = true;
            else if (owned.has(gi)) own = gi.slice();
            owned.add(own);
            grads.set(inp, own);
          }
        }
        grads.delete(t);
      } else {
        if (t.grad) addInto(t.grad.f32, g);
        else t.grad = new Tensor(g, t.shape);
      }
    }
    for (const t of order) t.node = null;
  }
}

function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // iterative DFS: deep graphs (1000s of ops) must not overflow the JS stack
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const ins = t.node ? t.node.inputs : [];
    if (i < ins.length) {
      top[1]++;
      const c = ins[i];
      if (c.requiresGrad && !seen.has(c)) { seen.add(c); stack.push([c, 0]); }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

/** a += b (gradient accumulation), by the native kernel when there is one. */
function addInto(a: Float32Array, b: Float32Array): void {
  const nk = backend().native;
  if (nk) nk.addInto(a, b, a.length);
  else for (let k = 0; k < a.length; k++) a[k] += b[k];
}

/**
 * Wrap an op's result: records the grad node only when recording is on and some input
 * requires grad. `backward` receives the output gradient and returns input gradients.
 */
export function result(
  data: Data, shape: readonly number[], op: string, inputs: readonly Tensor[],
  backward: (gradOut: Float32Array) => (Float32Array | null)[],
): Tensor {
  const out = new Tensor(data, shape);
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// constructors

export function tensor(values: ArrayLike<number>, shape?: readonly number[], requiresGrad = false): Tensor {
  return new Tensor(Float32Array.from(values), shape ?? [values.length], requiresGrad);
}
export function intTensor(values: ArrayLike<number>, shape?: readonly number[]): Tensor {
  return new Tensor(Int32Array.from(values), shape ?? [values.length]);
}
export function zeros(shape: readonly number[], requiresGrad = false): Tensor {
  checkShape(shape);
  return new Tensor(new Float32Array(sizeOf(shape)), shape, requiresGrad);
}
export function full(shape: readonly number[], value: number): Tensor {
  checkShape(shape);
  return new Tensor(new Float32Array(sizeOf(shape)).fill(value), shape);
}
export function ones(shape: readonly number[]): Tensor { return full(shape, 1); }
export function scalar(v: number): Tensor { return new Tensor(Float32Array.of(v), []); }
export function arange(n: number): Tensor {
  const d = new Int32Array(n);
  for (let i = 0; i < n; i++) d[i] = i;
  return new Tensor(d, [n]);
}
/** A trainable leaf. */
export function param(data: Float32Array, shape: readonly number[], name?: string): Tensor {
  const t = new Tensor(data, shape, true);
  if (name) t.name = name;
  return t;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
}

/** Normalise a possibly negative axis, with a clear error. */
export function normAxis(axis: number, ndim: number): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) throw new RangeError(`axis ${axis} is out of range for a ${ndim}-d tensor`);
  return a;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function assertFloat(t: Tensor, op: string): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new TypeError(`${op}: expected a float32 tensor, got ${t.dtype} [${t.shape.join(', ')}]`);
  return t.data;
}
