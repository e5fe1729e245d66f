#!/usr/bin/python3
"""PyTorch implementations of the three reference specs, for `make bench-torch`.

The same models as specs/jmvae.spec, specs/jmvae_kl.spec and specs/jmvae_h.spec
(layer widths, softplus variances, Bernoulli and categorical likelihoods,
analytic KL terms, the batch mean of every term, Adam with the spec's settings
and clipping of the gradient's total norm at 5), trained for one epoch on
Fashion-MNIST with the grey levels as Bernoulli targets, one-hot labels and a
fresh shuffle, as the generated trainer does. It prints one line per model:

    torch MODEL epoch SECONDS steps N threads T kernel CORE

Timing covers the training loop alone (gathering each batch, the noise, the
forward and backward passes, clipping and the Adam step), after a warm-up of
a few steps; loading the data is left out, as it is from the trainer's epoch
time. Run with /usr/bin/python3 (Debian's python3-torch).
"""
import argparse
import ctypes
import ctypes.util
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def load_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    zero, kind, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind != 0x08:
        sys.exit(f"bench_torch: {path} is not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mlp(sizes, last_linear=True):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or not last_linear:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def gaussian_head(raw):
    """mean and log-variance from a head's output: var = softplus(raw)."""
    d = raw.shape[1] // 2
    return raw[:, :d], torch.log(F.softplus(raw[:, d:]))


def kl_normal(m1, lv1, m2=None, lv2=None):
    """KL(N(m1, e^lv1) || N(m2, e^lv2)) summed over dimensions; N(0, I) when m2 is None."""
    if m2 is None:
        return 0.5 * torch.sum(-lv1 + torch.exp(lv1) + m1 * m1 - 1, dim=1)
    return 0.5 * torch.sum(lv2 - lv1 + (torch.exp(lv1) + (m1 - m2) ** 2) / torch.exp(lv2) - 1, dim=1)


def rec_terms(p_x, p_w, z, x, w):
    rec_x = F.binary_cross_entropy_with_logits(p_x(z), x, reduction="none").sum(1)
    rec_w = -(w * F.log_softmax(p_w(z), dim=1)).sum(1)
    return rec_x, rec_w


class JMVAE(nn.Module):
    """specs/jmvae.spec; with unimodal=True, specs/jmvae_kl.spec (alpha 0.1)."""

    def __init__(self, unimodal=False, latent=64, alpha=0.1):
        super().__init__()
        self.enc_x, self.enc_w = mlp([784, 512], False), mlp([10, 512], False)
        self.q_xw = mlp([1024, 512, 2 * latent])
        self.p_x, self.p_w = mlp([latent, 512, 512, 784]), mlp([latent, 512, 512, 10])
        self.unimodal, self.alpha = unimodal, alpha
        if unimodal:
            self.q_x = mlp([784, 512, 512, 2 * latent])
            self.q_w = mlp([10, 512, 512, 2 * latent])

    def forward(self, x, w, eps):
        m, lv = gaussian_head(self.q_xw(torch.cat([self.enc_x(x), self.enc_w(w)], 1)))
        z = m + torch.exp(0.5 * lv) * eps[0]
        rec_x, rec_w = rec_terms(self.p_x, self.p_w, z, x, w)
        loss = rec_x.mean() + rec_w.mean() + kl_normal(m, lv).mean()
        if self.unimodal:
            mx, lvx = gaussian_head(self.q_x(x))
            mw, lvw = gaussian_head(self.q_w(w))
            loss = loss + self.alpha * kl_normal(m, lv, mx, lvx).mean() + self.alpha * kl_normal(m, lv, mw, lvw).mean()
        return loss


class JMVAEH(nn.Module):
    """specs/jmvae_h.spec: z2 (32) on top of z1 (64)."""

    def __init__(self):
        super().__init__()
        self.enc_x, self.enc_w = mlp([784, 512], False), mlp([10, 512], False)
        self.h1 = mlp([1024, 512], False)
        self.q_z1 = mlp([512, 128])
        self.q_z2 = mlp([512, 512, 64])
        self.p_z1 = mlp([32, 512, 512, 128])
        self.p_x, self.p_w = mlp([64, 512, 512, 784]), mlp([64, 512, 512, 10])

    def forward(self, x, w, eps):
        h = self.h1(torch.cat([self.enc_x(x), self.enc_w(w)], 1))
        m2, lv2 = gaussian_head(self.q_z2(h))
        z2 = m2 + torch.exp(0.5 * lv2) * eps[0]
        m1, lv1 = gaussian_head(self.q_z1(h))
        z1 = m1 + torch.exp(0.5 * lv1) * eps[1]
        pm1, plv1 = gaussian_head(self.p_z1(z2))
        rec_x, rec_w = rec_terms(self.p_x, self.p_w, z1, x, w)
        return rec_x.mean() + rec_w.mean() + kl_normal(m1, lv1, pm1, plv1).mean() + kl_normal(m2, lv2).mean()


MODELS = {
    "jmvae": (lambda: JMVAE(False), [64]),
    "jmvae_kl": (lambda: JMVAE(True), [64]),
    "jmvae_h": (JMVAEH, [32, 64]),
}


def corename():
    """The OpenBLAS kernel of the library PyTorch's BLAS calls resolve to."""
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "unknown"


def epoch(name, x, w, threads, batch, warmup, seed):
    torch.manual_seed(seed)
    build, latents = MODELS[name]
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)

    def step(idx):
        xb, wb = x[idx], w[idx]
        eps = [torch.randn(len(idx), d) for d in latents]
        opt.zero_grad(set_to_none=True)
        loss = model(xb, wb, eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return loss

    order = torch.randperm(n, generator=g)
    for i in range(warmup):
        step(order[i * batch:(i + 1) * batch])
    order = torch.randperm(n, generator=g)
    start = time.perf_counter()
    steps = 0
    for first in range(0, n, batch):
        loss = step(order[first:first + batch])
        steps += 1
    seconds = time.perf_counter() - start
    if not torch.isfinite(loss):
        sys.exit(f"bench_torch: {name}: the loss is not finite")
    return seconds, steps, float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("models", nargs="*", default=list(MODELS))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    images = load_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
    labels = load_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
    if a.limit:
        images, labels = images[:a.limit], labels[:a.limit]
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    w = F.one_hot(torch.from_numpy(labels.astype(np.int64)), 10).float()
    core = corename()
    for name in a.models:
        if name not in MODELS:
            sys.exit(f"bench_torch: no model '{name}' (one of {', '.join(MODELS)})")
        seconds, steps, loss = epoch(name, x, w, a.threads, a.batch, a.warmup, a.seed)
        print(f"torch {name} epoch {seconds:.3f} steps {steps} threads {a.threads} kernel {core} loss {loss:.4f}",
              flush=True)


if __name__ == "__main__":
    main()
