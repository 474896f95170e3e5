#!/usr/bin/env python3
"""Recompute FID and Inception Score from an `actvar eval --features-out` file with numpy/scipy,
following pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm of the covariance product,
eps*I retry when it is not finite, real part) and the 10-split IS convention of docs/EVALUATION.md.
A cross-check outside the project's own code; not used by actvar itself.

    python3 scripts/fid-reference.py f.safetensors
"""
import json, struct, sys
import numpy as np
from scipy import linalg


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        assert e['dtype'] == 'F32', e['dtype']
        a, b = e['data_offsets']
        out[name] = np.frombuffer(data[a:b], dtype='<f4').reshape(e['shape']).astype(np.float64)
    return out


def fid(x, y, eps=1e-6):
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(root).all():
        off = np.eye(s1.shape[0]) * eps
        root = linalg.sqrtm((s1 + off) @ (s2 + off))
    if np.iscomplexobj(root):
        root = root.real
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def inception_score(logits, splits=10):
    lp = logits - logits.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    scores = []
    for part in np.array_split(lp, splits):
        p = np.exp(part)
        py = p.mean(0)
        scores.append(np.exp((p * (part - np.log(py))).sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


t = read_safetensors(sys.argv[1])
m, s = inception_score(t['gen_logits'])
print(json.dumps({'fid': fid(t['gen_features'], t['ref_features']), 'is_mean': m, 'is_std': s}))
