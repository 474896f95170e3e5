#!/usr/bin/env python3
"""PyTorch side of the sampling benchmarks: the VAR transformer and its KV-cache sampler
`autoregressive_infer_cfg`, written by us from docs/VAR.md §1–6 and shared/docs/var-reference.md (the
official VAR code is not on this machine). It follows the official structure op for op where that decides the
cost: AdaLN recomputed in every block at every scale, the KV cache grown by concatenation, attention as
`softmax(q·kᵀ)·v` in plain ops (torch 1.13 has no fused attention), CFG on the full logits, top-k / top-p
with `topk`, `sort`, `softmax`, `cumsum`, `scatter` and one `multinomial`, the token features from the
codebook (no Gumbel path), the Φ-weighted f̂ update with bicubic up- and area down-sampling. Parameter names
are the official state-dict keys (docs/VAR.md Appendix A/B), so a .safetensors written by actvar loads as it is.

    python3 bench/torch/var.py time --model d16 --batch 4 --threads 2 [--repeats 1] [--no-decode]
        seeded random weights (d16: the official sizes; fashion: the shipped model's weights from
        models/var-fashion-mnist.safetensors and its tokenizer); one warm-up generation at batch 1 (unless --no-warmup), then
        `repeats` timed generations of `batch` images (CFG 1.5, top-k 900, top-p 0.96 unless given);
        prints one JSON line with transformer and decode seconds per run.
    python3 bench/torch/var.py parity EXPORT.safetensors --var V.safetensors --vqvae T.safetensors
        EXPORT (written by `node dist/bench/sampling.js --export-parity EXPORT`) holds actvar's raw logits
        of every scale of a greedy (top-k 1) CFG generation; runs the same generation here on the same weights
        and prints the max |torch − actvar| of the logits and whether the tokens agree, as JSON.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

_n = sys.argv[sys.argv.index('--threads') + 1] if '--threads' in sys.argv[:-1] else '1'
if __name__ == '__main__':
    for _k in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[_k] = _n

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vqvae as vq  # noqa: E402  (bench/torch/vqvae.py: the image decoder and the safetensors reader)

PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


# ----------------------------------------------------------------------------------------------------------
# the transformer (docs/VAR.md §3)

class SelfAttention(nn.Module):
    """qkv = x·W_qkvᵀ + [q_bias | 0 | v_bias]; cosine attention with τ_h = exp(min(scale_mul, ln 100)) (§3.3)."""

    def __init__(self, C, H, l2=True):
        super().__init__()
        self.C, self.H, self.hd, self.l2 = C, H, C // H, l2
        self.mat_qkv = nn.Linear(C, 3 * C, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(C))
        self.v_bias = nn.Parameter(torch.zeros(C))
        self.register_buffer('zero_k_bias', torch.zeros(C))
        if l2:
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, H, 1, 1), math.log(4.0)))
        self.scale = 1.0 if l2 else 0.25 / math.sqrt(self.hd)
        self.proj = nn.Linear(C, C)
        self.caching, self.cached_k, self.cached_v = False, None, None

    def kv_caching(self, on):
        self.caching, self.cached_k, self.cached_v = on, None, None

    def forward(self, x, attn_bias):
        B, L, C = x.shape
        qkv = F.linear(x, self.mat_qkv.weight, torch.cat((self.q_bias, self.zero_k_bias, self.v_bias)))
        q, k, v = qkv.view(B, L, 3, self.H, self.hd).permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, hd]
        if self.l2:
            q = F.normalize(q, dim=-1).mul(self.scale_mul_1H11.clamp_max(math.log(100.0)).exp())
            k = F.normalize(k, dim=-1)
        if self.caching:
            if self.cached_k is None:
                self.cached_k, self.cached_v = k, v
            else:
                self.cached_k = torch.cat((self.cached_k, k), dim=2)
                self.cached_v = torch.cat((self.cached_v, v), dim=2)
            k, v = self.cached_k, self.cached_v
        attn = q.mul(self.scale) @ k.transpose(-2, -1)
        if attn_bias is not None:
            attn.add_(attn_bias)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class FFN(nn.Module):
    def __init__(self, C, hidden):
        super().__init__()
        self.fc1 = nn.Linear(C, hidden)
        self.fc2 = nn.Linear(hidden, C)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate='tanh'))


class AdaLNSelfAttn(nn.Module):
    """x ← x + γ1·Attn(LN(x)(1+s1)+b1); x ← x + γ2·FFN(LN(x)(1+s2)+b2), chunks γ1 γ2 s1 s2 b1 b2 (§3.2)."""

    def __init__(self, C, H, hidden, eps, l2=True):
        super().__init__()
        self.C, self.eps = C, eps
        self.attn = SelfAttention(C, H, l2)
        self.ffn = FFN(C, hidden)
        self.ada_lin = nn.Sequential(nn.SiLU(inplace=False), nn.Linear(C, 6 * C))

    def ln(self, x):
        return F.layer_norm(x, (self.C,), eps=self.eps)

    def forward(self, x, cond_BD, attn_bias):
        g1, g2, s1, s2, b1, b2 = self.ada_lin(cond_BD).view(-1, 1, 6, self.C).unbind(2)
        x = x + self.attn(self.ln(x).mul(s1.add(1)).add_(b1), attn_bias).mul_(g1)
        x = x + self.ffn(self.ln(x).mul(s2.add(1)).add_(b2)).mul(g2)
        return x


class AdaLNBeforeHead(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.C, self.eps = C, eps
        self.ada_lin = nn.Sequential(nn.SiLU(inplace=False), nn.Linear(C, 2 * C))

    def forward(self, x, cond_BD):
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.C).unbind(2)
        return F.layer_norm(x, (self.C,), eps=self.eps).mul(scale.add(1)).add_(shift)


# ----------------------------------------------------------------------------------------------------------
# the quantiser's inference half (docs/VAR.md §4.1, §4.2): codebook, Φ, f̂ update

class Phi(nn.Conv2d):
    def __init__(self, c, ks, resi):
        super().__init__(c, c, ks, 1, ks // 2)
        self.resi = abs(resi)

    def forward(self, h):
        return h.mul(1 - self.resi) + super().forward(h).mul_(self.resi)


class Quantizer(nn.Module):
    """`quantize.*` keys: the codebook and the K shared Φ convs; `get_next_autoregressive_input` (§6)."""

    def __init__(self, V, Cvae, patch_nums, K=4, ks=3, resi=0.5):
        super().__init__()
        self.patch_nums = tuple(patch_nums)
        self.embedding = nn.Embedding(V, Cvae)
        self.quant_resi = nn.Module()
        self.quant_resi.qresi_ls = nn.ModuleList([Phi(Cvae, ks, resi) for _ in range(K)])
        self.ticks = np.linspace(1 / 3 / K, 1 - 1 / 3 / K, K) if K == 4 else np.linspace(1 / 2 / K, 1 - 1 / 2 / K, K)

    def phi(self, at):
        return self.quant_resi.qresi_ls[int(np.argmin(np.abs(self.ticks - at)))]

    def get_next_autoregressive_input(self, si, SN, f_hat, h_BChw):
        HW = self.patch_nums[-1]
        if si != SN - 1:
            h = self.phi(si / (SN - 1))(F.interpolate(h_BChw, size=(HW, HW), mode='bicubic'))
            f_hat.add_(h)
            pn = self.patch_nums[si + 1]
            return f_hat, F.interpolate(f_hat, size=(pn, pn), mode='area')
        f_hat.add_(self.phi(si / (SN - 1))(h_BChw))
        return f_hat, f_hat


def sample_with_top_k_top_p_(logits_BlV, top_k, top_p, rng):
    """top-k keeps logits ≥ the k-th largest; top-p drops the ascending prefix whose softmax cumsum ≤ 1 − p
    (never the largest); then one multinomial draw per row (§6)."""
    B, l, V = logits_BlV.shape
    if top_k > 0:
        kth = logits_BlV.topk(top_k, largest=True, sorted=False, dim=-1)[0].amin(dim=-1, keepdim=True)
        logits_BlV.masked_fill_(logits_BlV < kth, -torch.inf)
    if top_p > 0:
        sorted_logits, sorted_idx = logits_BlV.sort(dim=-1, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        remove[..., -1:] = False
        logits_BlV.masked_fill_(remove.scatter(sorted_idx.ndim - 1, sorted_idx, remove), -torch.inf)
    return torch.multinomial(logits_BlV.softmax(dim=-1).view(-1, V), num_samples=1, replacement=True, generator=rng).view(B, l)


class VAR(nn.Module):
    def __init__(self, depth, C, H, hidden, V, Cvae, num_classes, patch_nums, eps=1e-6, l2=True):
        super().__init__()
        self.C, self.V, self.Cvae, self.num_classes = C, V, Cvae, num_classes
        self.patch_nums = tuple(patch_nums)
        self.L = sum(p * p for p in patch_nums)
        self.first_l = 1
        self.word_embed = nn.Linear(Cvae, C)
        self.class_emb = nn.Embedding(num_classes + 1, C)
        self.pos_start = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_1LC = nn.Parameter(torch.zeros(1, self.L, C))
        self.lvl_embed = nn.Embedding(len(patch_nums), C)
        lvl = torch.cat([torch.full((p * p,), i, dtype=torch.long) for i, p in enumerate(patch_nums)])
        self.register_buffer('lvl_1L', lvl.view(1, self.L))
        self.blocks = nn.ModuleList([AdaLNSelfAttn(C, H, hidden, eps, l2) for _ in range(depth)])
        self.head_nm = AdaLNBeforeHead(C, eps)
        self.head = nn.Linear(C, V)

    def get_logits(self, h, cond_BD):
        return self.head(self.head_nm(h, cond_BD))

    @torch.no_grad()
    def autoregressive_infer_cfg(self, label_B, quant, decoder=None, cfg=1.5, top_k=0, top_p=0.0, rng=None, trace=None):
        """docs/VAR.md §6: 2B rows (cond, then null class), guidance t = cfg·si/(SN−1), sampling, f̂ update;
        the image (decoder(f̂) + 1)/2 when a decoder is given, else f̂."""
        B = label_B.shape[0]
        SN = len(self.patch_nums)
        cond_BD = self.class_emb(torch.cat((label_B, torch.full_like(label_B, self.num_classes)), dim=0))
        sos = cond_BD
        lvl_pos = self.lvl_embed(self.lvl_1L) + self.pos_1LC
        next_map = sos.unsqueeze(1).expand(2 * B, self.first_l, -1) + self.pos_start.expand(2 * B, self.first_l, -1) + lvl_pos[:, :self.first_l]
        cur_L = 0
        f_hat = sos.new_zeros(B, self.Cvae, self.patch_nums[-1], self.patch_nums[-1])
        for b in self.blocks:
            b.attn.kv_caching(True)
        for si, pn in enumerate(self.patch_nums):
            ratio = si / (SN - 1)
            cur_L += pn * pn
            x = next_map
            for b in self.blocks:
                x = b(x, cond_BD, None)
            logits = self.get_logits(x, cond_BD)
            if trace is not None:
                trace.append(logits.clone())
            t = cfg * ratio
            logits = (1 + t) * logits[:B] - t * logits[B:]
            idx_Bl = sample_with_top_k_top_p_(logits, top_k, top_p, rng)
            h_BChw = quant.embedding(idx_Bl).transpose_(1, 2).reshape(B, self.Cvae, pn, pn)
            f_hat, next_map = quant.get_next_autoregressive_input(si, SN, f_hat, h_BChw)
            if si != SN - 1:
                next_map = next_map.view(B, self.Cvae, -1).transpose(1, 2)
                next_map = self.word_embed(next_map) + lvl_pos[:, cur_L:cur_L + self.patch_nums[si + 1] ** 2]
                next_map = next_map.repeat(2, 1, 1)
        for b in self.blocks:
            b.attn.kv_caching(False)
        if decoder is None:
            return f_hat
        return decoder(f_hat).add_(1).mul_(0.5)


def init_like_official(var, depth, seed):
    """docs/VAR.md §3.7: σ = √(1/(3C)) for every Linear weight and the tables, head ×0.02, head AdaLN ×0.5,
    proj/fc2 ÷√(2·depth), AdaLN gamma rows ×1e-5 and the rest ×0.5 (the values only shape the logits' spread)."""
    g = torch.Generator().manual_seed(seed)
    C = var.C
    sigma = math.sqrt(1 / (3 * C))
    with torch.no_grad():
        for name, p in var.named_parameters():
            if name.endswith('bias') or 'scale_mul' in name:
                continue
            p.copy_(torch.randn(p.shape, generator=g) * sigma)
        var.head.weight.mul_(0.02)
        var.head_nm.ada_lin[1].weight.mul_(0.5)
        for b in var.blocks:
            b.attn.proj.weight.div_(math.sqrt(2 * depth))
            b.ffn.fc2.weight.div_(math.sqrt(2 * depth))
            b.ada_lin[1].weight[:2 * C].mul_(1e-5)
            b.ada_lin[1].weight[2 * C:].mul_(0.5)


# ----------------------------------------------------------------------------------------------------------
# models of the benchmarks

def build_d16(seed=0):
    """VAR-d16 (C 1024, 16 heads, FFN 4096, V 4096, Cvae 32, 1000 classes, 10 scales) + the official VQVAE's
    quantiser and decoder, seeded random weights."""
    torch.manual_seed(seed)
    var = VAR(16, 1024, 16, 4096, 4096, 32, 1000, PATCH_NUMS_256)
    init_like_official(var, 16, seed)
    quant = Quantizer(4096, 32, PATCH_NUMS_256)
    dec = vq.build_image_decoder(seed=seed + 1)
    return var.eval(), quant.eval(), dec


def _config_of(path):
    import struct
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        return json.loads(json.loads(f.read(n))['__metadata__']['config'])


def build_from_files(var_path, vqvae_path):
    """A VAR and its tokenizer from actvar's .safetensors (config in the metadata, official key names)."""
    c, t = _config_of(var_path), _config_of(vqvae_path)
    var = VAR(c['depth'], c['width'], c['heads'], c['mlpHidden'], c['vocabSize'], c['Cvae'], c['numClasses'],
              c['patchNums'], c['normEps'], c['attnL2Norm'])
    sd = vq.load_safetensors(var_path)
    sd.pop('attn_bias_for_masking', None)
    sd['lvl_1L'] = sd['lvl_1L'].long()
    var.load_state_dict(sd, strict=True)
    tsd = vq.load_safetensors(vqvae_path)
    K = t.get('shareQuantResi', 4)
    quant = Quantizer(t['vocabSize'], t['Cvae'], t['patchNums'], K, t.get('quantConvKs', 3), t.get('quantResi', 0.5))
    quant.load_state_dict({k[len('quantize.'):]: v for k, v in tsd.items()
                           if k.startswith('quantize.') and not k.endswith('ema_vocab_hit_SV')}, strict=True)
    groups = t.get('normGroups', 32)
    vq.Normalize = lambda ch: nn.GroupNorm(num_groups=groups, num_channels=ch, eps=1e-6, affine=True)
    dec = vq.build_image_decoder(ch=t['ch'], ch_mult=t['chMult'], num_res_blocks=t['numResBlocks'], z_channels=t['Cvae'],
                                 out_channels=t.get('inChannels', 3), using_sa=t.get('usingSa', True),
                                 using_mid_sa=t.get('usingMidSa', True))
    dec.load_state_dict({k: v for k, v in tsd.items() if k.startswith('decoder.') or k.startswith('post_quant_conv.')}, strict=True)
    return var.eval(), quant.eval(), dec


def build(model, root):
    if model == 'd16':
        return build_d16()
    if model == 'fashion':
        return build_from_files(os.path.join(root, 'models/var-fashion-mnist.safetensors'),
                                os.path.join(root, 'models/tokenizer-fashion-mnist.safetensors'))
    raise SystemExit(f'var.py: unknown model {model!r}: expected d16 or fashion')


# ----------------------------------------------------------------------------------------------------------
# commands

def cmd_time(a):
    torch.set_num_threads(a.threads)
    var, quant, dec = build(a.model, a.root)
    for p in list(var.parameters()) + list(quant.parameters()):
        p.requires_grad_(False)
    nc = var.num_classes
    labels = torch.tensor([(i * 7) % nc for i in range(a.batch)], dtype=torch.long)
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if not a.no_warmup:
            f = var.autoregressive_infer_cfg(labels[:1], quant, None, a.cfg, a.top_k, a.top_p, rng)  # warm-up
            if not a.no_decode:
                dec(f)
        trans, deco = [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            f = var.autoregressive_infer_cfg(labels, quant, None, a.cfg, a.top_k, a.top_p, rng)
            t1 = time.perf_counter()
            if not a.no_decode:
                img = dec(f).add_(1).mul_(0.5)
                assert img.shape[0] == a.batch
            t2 = time.perf_counter()
            trans.append(t1 - t0)
            deco.append(t2 - t1)
    tot = [x + y for x, y in zip(trans, deco)]
    print(json.dumps({'side': 'torch', 'model': a.model, 'batch': a.batch, 'threads': torch.get_num_threads(),
                      'transformer_s': trans, 'decode_s': None if a.no_decode else deco,
                      'images_per_s': [a.batch / s for s in tot], 'median_images_per_s': statistics.median([a.batch / s for s in tot]),
                      'torch': torch.__version__}))


def cmd_parity(a):
    torch.set_num_threads(a.threads)
    var, quant, _ = build_from_files(a.var, a.vqvae)
    ex = vq.load_safetensors(a.export)
    labels = ex['labels'].long()
    SN = len(var.patch_nums)
    trace = []
    var.autoregressive_infer_cfg(labels, quant, None, float(ex['cfg'].item()), 1, 0.0, torch.Generator().manual_seed(0), trace)
    worst, agree = 0.0, True
    per_scale = []
    for si in range(SN):
        ours = ex[f'logits.{si}']
        d = (trace[si] - ours).abs().max().item()
        per_scale.append(d)
        worst = max(worst, d)
    # the tokens: greedy, so equal logits give equal tokens; compare the argmax of the CFG logits per scale
    for si in range(SN):
        B = labels.shape[0]
        t = float(ex['cfg'].item()) * si / (SN - 1)
        mine = ((1 + t) * trace[si][:B] - t * trace[si][B:]).argmax(-1)
        agree = agree and bool((mine == ex[f'idx.{si}'].long()).all())
    print(json.dumps({'max_abs_diff_logits': worst, 'per_scale': per_scale, 'tokens_agree': agree,
                      'logit_range': float(max(ex[f'logits.{si}'].abs().max().item() for si in range(SN)))}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    t = sub.add_parser('time')
    t.add_argument('--model', default='d16', choices=['d16', 'fashion'])
    t.add_argument('--batch', type=int, default=1)
    t.add_argument('--repeats', type=int, default=1)
    t.add_argument('--threads', type=int, default=1)
    t.add_argument('--cfg', type=float, default=1.5)
    t.add_argument('--top-k', type=int, default=900)
    t.add_argument('--top-p', type=float, default=0.96)
    t.add_argument('--no-decode', action='store_true')
    t.add_argument('--no-warmup', action='store_true')
    t.add_argument('--root', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
    p = sub.add_parser('parity')
    p.add_argument('export')
    p.add_argument('--var', required=True)
    p.add_argument('--vqvae', required=True)
    p.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    {'time': cmd_time, 'parity': cmd_parity}[a.cmd](a)


if __name__ == '__main__':
    main()
