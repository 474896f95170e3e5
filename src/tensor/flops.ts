/**
 * FLOPs accounting (1 multiply-add = 2 FLOPs, matmul and conv only, as in docs/VAR.md §10).
 * Every GEMM/conv op records its FLOPs with its weight operand (an op hook); the category is the
 * innermost `flopsCategory` label when one is active (callers that time a whole phase, e.g. a decode),
 * else the category the model declared for that weight with `flopsTag` (e.g. 'qkv' for a block's
 * mat_qkv weight), else 'other'. Attention ops record their score FLOPs as 'attn_scores'.
 *
 * Dry-run mode (`dryRun(() => ...)`) runs the same code but GEMM and conv kernels skip their
 * arithmetic (outputs stay zero), so FLOPs of large models can be counted quickly.
 */
export class FlopsCounter {
  readonly byCategory = new Map<string, number>();
  add(category: string, flops: number): void {
    this.byCategory.set(category, (this.byCategory.get(category) ?? 0) + flops);
  }
  get total(): number { let s = 0; for (const v of this.byCategory.values()) s += v; return s; }
  toJSON(): Record<string, number> { return Object.fromEntries(this.byCategory); }
}

const counters: FlopsCounter[] = [];
const categories: string[] = [];
let dry = false;

/**
 * Count the FLOPs of everything `fn` runs (nested counters all see the work). Pass `c` to read the
 * running count while fn runs (e.g. per stage, from a callback).
 */
export function countFlops<T>(fn: () => T, c: FlopsCounter = new FlopsCounter()): { result: T; flops: FlopsCounter } {
  counters.push(c);
  try { return { result: fn(), flops: c }; } finally { counters.splice(counters.lastIndexOf(c), 1); }
}

/** Label the kernels that `fn` runs with `name` (innermost label wins). */
export function flopsCategory<T>(name: string, fn: () => T): T {
  categories.push(name);
  try { return fn(); } finally { categories.pop(); }
}

/** Categories declared for weights (keyed by the weight tensor: dry runs share one buffer between tensors). */
const tags = new WeakMap<object, string>();

/** Declare that the work done with the tensor `weight` (any op multiplying by it) counts as `category`. Returns the weight. */
export function flopsTag<T extends object>(weight: T, category: string): T {
  tags.set(weight, category);
  return weight;
}

/**
 * Called by the ops: `flops` of work with the weight tensor `operand` (its `flopsTag` category), or
 * under the category named by a string. Cheap when no counter is active.
 */
export function recordFlops(flops: number, operand: object | string | null = null): void {
  if (counters.length === 0) return;
  const cat = categories.length ? categories[categories.length - 1]
    : typeof operand === 'string' ? operand : (operand && tags.get(operand)) ?? 'other';
  for (const c of counters) c.add(cat, flops);
}

export function isDryRun(): boolean { return dry; }

/** Run `fn` with GEMM/conv arithmetic skipped (shapes, control flow and FLOPs counts unchanged). */
export function dryRun<T>(fn: () => T): T {
  const prev = dry;
  dry = true;
  try { return fn(); } finally { dry = prev; }
}
