// Images per second of whole generations (transformer + VQVAE decode), actvar (dense and ActVAR) beside our
// PyTorch 1.13 port of `autoregressive_infer_cfg` (bench/torch/var.py) at the same batch and thread count, in
// alternating processes (actvar, torch, torch, actvar, …) so that drifting load hits both sides alike.
// Run after `npm run build`:
//
//   node bench/sampling-vs-torch.mjs [--threads 2] [--rounds 2] [--configs d16:1,d16:4,d16:16,fashion:64,fashion:256]
//
// A config may carry flags: `d16:16:nodecode` (transformer only, both sides), `:nowarmup` (no batch-1 warm-up).
// Every round runs `node dist/bench/sampling.js --model M --batch B --json` (dense and ActVAR, one timed
// generation each after a batch-1 warm-up) and `python3 bench/torch/var.py time --model M --batch B` (one timed
// generation after a batch-1 warm-up). Prints every run and, per config, the median images/s of each side, the
// spread (min–max over the rounds) and the ratio actvar / PyTorch of the medians. OPENBLAS_NUM_THREADS,
// OMP_NUM_THREADS and ACTVAR_THREADS are set to --threads for both sides.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const threads = Number(opt('--threads', '2')), rounds = Number(opt('--rounds', '2'));
const configs = opt('--configs', 'd16:1,d16:4,d16:16,fashion:64,fashion:256').split(',').map((c) => {
  const [model, batch, ...flags] = c.split(':');
  return { model, batch: Number(batch), decode: !flags.includes('nodecode'), warmup: !flags.includes('nowarmup') };
});
const root = fileURLToPath(new URL('..', import.meta.url));
const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), ACTVAR_THREADS: String(threads) };

function runJson(cmd, argv) {
  const r = spawnSync(cmd, argv, { cwd: root, env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited with ${r.status}:\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  return JSON.parse(line);
}
const flags = (c) => [...(c.decode ? [] : ['--no-decode']), ...(c.warmup ? [] : ['--no-warmup'])];
const ours = (c) => runJson(process.execPath, ['dist/bench/sampling.js', '--model', c.model, '--batch', String(c.batch), '--json', ...flags(c)]);
const torch = (c) => runJson('/usr/bin/python3', ['bench/torch/var.py', 'time', '--model', c.model, '--batch', String(c.batch), '--threads', String(threads),
  ...(c.model === 'fashion' ? ['--top-k', '0', '--top-p', '0'] : []), ...flags(c)]);

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const f2 = (x) => x.toFixed(x < 10 ? 3 : 1);
const summary = [];
console.log(`threads ${threads}, rounds ${rounds}, ${new Date().toISOString()}`);
for (const c of configs) {
  const dense = [], act = [], pt = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['ours', 'torch'] : ['torch', 'ours'];
    for (const side of order) {
      if (side === 'ours') {
        const o = ours(c);
        dense.push(o.dense.images_per_s[0]); act.push(o.actvar.images_per_s[0]);
        console.log(`${c.model} b${c.batch} round ${r + 1} actvar: dense ${f2(o.dense.images_per_s[0])} img/s (transformer ${o.dense.transformer_s[0]} s, decode ${o.dense.decode_s[0]} s), ` +
          `ActVAR ${f2(o.actvar.images_per_s[0])} img/s (transformer ${o.actvar.transformer_s[0]} s)`);
      } else {
        const t = torch(c);
        pt.push(t.images_per_s[0]);
        console.log(`${c.model} b${c.batch} round ${r + 1} torch: ${f2(t.images_per_s[0])} img/s (transformer ${t.transformer_s[0].toFixed(2)} s, decode ${t.decode_s ? t.decode_s[0].toFixed(2) : '-'} s)`);
      }
    }
  }
  const row = { model: c.model, batch: c.batch, dense: median(dense), actvar: median(act), torch: median(pt),
    dense_range: [Math.min(...dense), Math.max(...dense)], actvar_range: [Math.min(...act), Math.max(...act)], torch_range: [Math.min(...pt), Math.max(...pt)] };
  summary.push(row);
  console.log(`${c.model} b${c.batch}: dense ${f2(row.dense)} (${row.dense_range.map(f2).join('–')}), ActVAR ${f2(row.actvar)} (${row.actvar_range.map(f2).join('–')}), ` +
    `PyTorch ${f2(row.torch)} (${row.torch_range.map(f2).join('–')}) img/s; dense / PyTorch ${(row.dense / row.torch).toFixed(2)}×, ActVAR / PyTorch ${(row.actvar / row.torch).toFixed(2)}×`);
}
console.log(JSON.stringify(summary));
