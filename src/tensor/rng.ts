/**
 * Seeded random numbers.
 *
 * Algorithm: xoshiro128** (Blackman & Vigna, 2018; 128-bit state, period 2^128−1), state seeded
 * from a 32-bit seed by SplitMix32 so that nearby seeds give unrelated streams.
 * - uniform(): the top 24 bits of one output / 2^24, in [0, 1) exactly representable in float32.
 * - normal(): Box–Muller on two uniforms (u1 in (0,1]); the second value is cached.
 * - gumbel(): −log(−log(u)), u in (0,1) (equivalently −log(Exp(1))).
 * - multinomial(p): inverse-CDF on one uniform.
 * The state is four uint32 plus the cached normal, and can be saved/restored exactly (training resume).
 */
export interface RngState { s: [number, number, number, number]; spare: number | null }

export class Rng {
  private s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed = 0) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      // SplitMix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** Next raw 32-bit output. */
  nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Uniform in [0, 1). */
  uniform(): number { return (this.nextU32() >>> 8) / 16777216; }

  /** Uniform integer in [0, n). */
  int(n: number): number { return Math.floor(this.uniform() * n); }

  /** Standard normal (Box–Muller). */
  normal(): number {
    if (this.spare !== null) { const v = this.spare; this.spare = null; return v; }
    const u1 = 1 - this.uniform(); // (0, 1]
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }

  /** Standard Gumbel: −log(−log u), u ∈ (0,1). */
  gumbel(): number {
    let u = this.uniform();
    while (u === 0) u = this.uniform();
    return -Math.log(-Math.log(u));
  }

  /**
   * One draw from unnormalised non-negative weights p[off .. off+n) (inverse CDF).
   * Zero-weight entries are never drawn.
   */
  multinomial(p: ArrayLike<number>, off = 0, n = p.length - off): number {
    let total = 0;
    for (let i = 0; i < n; i++) total += p[off + i];
    if (!(total > 0)) throw new RangeError('multinomial: weights must have a positive sum');
    const u = this.uniform() * total;
    let acc = 0, last = -1;
    for (let i = 0; i < n; i++) {
      const w = p[off + i];
      if (w <= 0) continue;
      acc += w; last = i;
      if (u < acc) return i;
    }
    return last; // rounding: u landed on the total
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T>(a: T[] | Int32Array): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i]; a[i] = a[j]; a[j] = t;
    }
  }

  getState(): RngState { return { s: [this.s[0], this.s[1], this.s[2], this.s[3]], spare: this.spare }; }
  setState(st: RngState): void {
    if (!Array.isArray(st.s) || st.s.length !== 4) throw new TypeError('Rng.setState: expected {s: [4 uint32], spare}');
    this.s.set(st.s); this.spare = st.spare;
  }
}

function rotl(x: number, k: number): number { return ((x << k) | (x >>> (32 - k))) >>> 0; }
