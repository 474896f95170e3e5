// Row copies of the expert experiments (the same runs-of-consecutive-rows copies as src/actvar/experts.ts).
export function gatherRows(dst, src, tokens, o0, cnt, C) {
  for (let r = 0; r < cnt;) {
    const t = tokens[o0 + r];
    let e = r + 1;
    while (e < cnt && tokens[o0 + e] === t + (e - r)) e++;
    dst.set(src.subarray(t * C, (t + e - r) * C), r * C);
    r = e;
  }
}
export function scatterRows(out, src, tokens, o0, cnt, C) {
  for (let r = 0; r < cnt;) {
    const t = tokens[o0 + r];
    let e = r + 1;
    while (e < cnt && tokens[o0 + e] === t + (e - r)) e++;
    out.set(src.subarray(r * C, e * C), t * C);
    r = e;
  }
}
