#!/usr/bin/env python3
"""PyTorch side of the VQVAE decode benchmarks: the multi-scale VQVAE's image path, written by us from
docs/VAR.md §4 and shared/docs/var-reference.md §4 (the official VAR code is not on this machine).

    fhat_to_img(f̂) = clamp(decoder(post_quant_conv(f̂)), −1, 1)

Decoder: conv_in (z → ch·mult[-1]), mid (ResnetBlock, AttnBlock, ResnetBlock), the levels up.{n−1} … up.0
(num_res_blocks + 1 ResnetBlocks each, an AttnBlock after each block of the lowest-resolution level,
nearest ×2 upsampling + 3×3 conv at the end of every level but up.0), norm_out (GroupNorm) → SiLU →
conv_out. GroupNorm has 32 groups and eps 1e-6. Parameter names are the official state-dict keys
(`post_quant_conv.*`, `decoder.*`, docs/VAR.md Appendix B), so weights exported by actvar load as they are.

API (also used by other scripts in bench/torch/):

    from vqvae import build_image_decoder, load_safetensors
    dec = build_image_decoder()                      # official vae_ch160v4096z32 sizes, seeded random weights
    dec.load_state_dict(load_safetensors(path), strict=False)   # optional: weights exported by actvar
    with torch.no_grad():
        img = dec(f_hat)                             # f_hat [B, 32, 16, 16] → image [B, 3, 256, 256] in [−1, 1]

`build_image_decoder(ch=160, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=32, out_channels=3,
using_sa=True, using_mid_sa=True, seed=0)` returns an `ImageDecoder` (an nn.Module in eval mode) with
torch's default (seeded) initialisation; `load_safetensors(path)` reads a .safetensors file into a dict of
float32 tensors (a plain reader of the format, numpy only).

CLI:
    python3 bench/torch/vqvae.py time --batch 1 --repeats 3 --threads 2
        prints one JSON line {"seconds": [...], "median": s, "min": s, "max": s, "batch": B, "threads": T, ...}
    python3 bench/torch/vqvae.py parity EXPORT.safetensors [--threads T]
        EXPORT holds the weights, `f_hat` and actvar's output `img` (written by
        `node dist/bench/vqvae-decode.js --export EXPORT`); prints the max |torch − actvar| as JSON.
"""
import argparse
import json
import os
import statistics
import struct
import sys
import time

# Pin every native pool (OpenMP of oneDNN/ATen, OpenBLAS) to --threads before torch loads: those pools
# read their size when the library loads.
_n = sys.argv[sys.argv.index('--threads') + 1] if '--threads' in sys.argv[:-1] else '1'
if __name__ == '__main__':
    for _k in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[_k] = _n

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def Normalize(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """out = nin_shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))); 1×1 shortcut only when cin ≠ cout."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = Normalize(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = Normalize(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """One head over the H·W positions: w = softmax_j(q_i·k_j · c^−½), out = x + proj_out(Σ_j w_ij v_j)."""

    def __init__(self, c: int):
        super().__init__()
        self.C = c
        self.norm = Normalize(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)
        self.w_ratio = int(c) ** (-0.5)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        w = torch.bmm(q.permute(0, 2, 1), k).mul_(self.w_ratio)  # [B, HW(i), HW(j)]
        w = F.softmax(w, dim=2)
        h = torch.bmm(v, w.permute(0, 2, 1))  # [B, C, HW(i)]
        return x + self.proj_out(h.reshape(B, C, H, W))


class Upsample2x(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode='nearest'))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, out_channels, using_sa, using_mid_sa):
        super().__init__()
        n = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in) if using_mid_sa else nn.Identity()
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        up = [None] * n
        for i in reversed(range(n)):
            lvl = nn.Module()
            lvl.block, lvl.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                lvl.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if i == n - 1 and using_sa:
                    lvl.attn.append(AttnBlock(block_in))
            if i != 0:
                lvl.upsample = Upsample2x(block_in)
            up[i] = lvl
        self.up = nn.ModuleList(up)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, 1, 1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for j, blk in enumerate(lvl.block):
                h = blk(h)
                if len(lvl.attn) > 0:
                    h = lvl.attn[j](h)
            if hasattr(lvl, 'upsample'):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class ImageDecoder(nn.Module):
    """fhat_to_img: clamp(decoder(post_quant_conv(f̂)), −1, 1); keys `post_quant_conv.*` and `decoder.*`."""

    def __init__(self, ch=160, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=32, out_channels=3,
                 using_sa=True, using_mid_sa=True):
        super().__init__()
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 3, 1, 1)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels, out_channels, using_sa, using_mid_sa)

    def forward(self, f_hat):
        return self.decoder(self.post_quant_conv(f_hat)).clamp_(-1, 1)


def build_image_decoder(ch=160, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=32, out_channels=3,
                        using_sa=True, using_mid_sa=True, seed=0) -> ImageDecoder:
    """The image path of the VQVAE at the given sizes (default: the official vae_ch160v4096z32), torch's default
    initialisation seeded with `seed`, in eval mode with gradients off."""
    torch.manual_seed(seed)
    dec = ImageDecoder(ch, tuple(ch_mult), num_res_blocks, z_channels, out_channels, using_sa, using_mid_sa)
    dec.eval()
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec


_DTYPES = {'F32': np.float32, 'F64': np.float64, 'I32': np.int32, 'I64': np.int64, 'F16': np.float16}


def load_safetensors(path: str) -> dict:
    """Every tensor of a .safetensors file (8-byte little-endian header length, JSON header, raw data)."""
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        s, e = info['data_offsets']
        arr = np.frombuffer(raw, dtype=_DTYPES[info['dtype']], count=(e - s) // np.dtype(_DTYPES[info['dtype']]).itemsize,
                            offset=base + s)
        out[name] = torch.from_numpy(arr.reshape(info['shape']).copy())
    return out


def cmd_time(a) -> None:
    torch.set_num_threads(a.threads)
    dec = build_image_decoder()
    g = torch.Generator().manual_seed(1)
    f_hat = torch.randn(a.batch, 32, 16, 16, generator=g)
    seconds = []
    with torch.no_grad():
        dec(f_hat)  # warm-up (oneDNN primitives, allocator)
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            img = dec(f_hat)
            seconds.append(time.perf_counter() - t0)
    assert img.shape == (a.batch, 3, 256, 256)
    print(json.dumps({'side': 'torch', 'batch': a.batch, 'threads': torch.get_num_threads(), 'seconds': seconds,
                      'median': statistics.median(seconds), 'min': min(seconds), 'max': max(seconds),
                      'torch': torch.__version__, 'mkldnn': torch.backends.mkldnn.is_available()}))


def cmd_parity(a) -> None:
    torch.set_num_threads(a.threads)
    sd = load_safetensors(a.export)
    f_hat, want = sd.pop('f_hat'), sd.pop('img')
    pq = sd['post_quant_conv.weight'].shape
    # sizes from the weights: ch from conv_out, ch_mult from the up levels' conv1 widths
    ch = sd['decoder.conv_out.weight'].shape[1]
    levels = sorted({int(k.split('.')[2]) for k in sd if k.startswith('decoder.up.')})
    ch_mult = [sd[f'decoder.up.{i}.block.0.conv2.weight'].shape[0] // ch for i in levels]
    nrb = len({k.split('.')[4] for k in sd if k.startswith(f'decoder.up.0.block.')}) - 1
    dec = build_image_decoder(ch=ch, ch_mult=ch_mult, num_res_blocks=nrb, z_channels=pq[0],
                              out_channels=sd['decoder.conv_out.weight'].shape[0],
                              using_sa=any('.attn.' in k for k in sd), using_mid_sa=any('mid.attn_1' in k for k in sd))
    missing, unexpected = dec.load_state_dict(sd, strict=False)
    if missing:
        sys.exit(f'parity: weights missing from {a.export}: {missing[:5]}')
    with torch.no_grad():
        got = dec(f_hat)
    d = (got - want).abs()
    print(json.dumps({'max_abs_diff': d.max().item(), 'mean_abs_diff': d.mean().item(), 'shape': list(got.shape),
                      'ignored_keys': len(unexpected), 'ch': ch, 'ch_mult': ch_mult, 'num_res_blocks': nrb}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    t = sub.add_parser('time', help='seconds per decode of random latents at the official size')
    t.add_argument('--batch', type=int, default=1)
    t.add_argument('--repeats', type=int, default=3)
    t.add_argument('--threads', type=int, default=1)
    p = sub.add_parser('parity', help='decode the exported f_hat with the exported weights, compare with actvar')
    p.add_argument('export')
    p.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    {'time': cmd_time, 'parity': cmd_parity}[a.cmd](a)


if __name__ == '__main__':
    main()
