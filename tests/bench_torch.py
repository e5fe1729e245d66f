#!/usr/bin/python3
"""PyTorch implementations of the reference specs and of the MVAE, MMVAE and MoPoE examples, for `make bench-torch`.

jmvae, jmvae_kl, jmvae_h: the models of specs/jmvae.spec, specs/jmvae_kl.spec and specs/jmvae_h.spec (layer
widths, softplus variances, Bernoulli and categorical likelihoods, analytic KL terms). mvae, mmvae, mmvae_k10,
mopoe: examples/mvae.spec, examples/mmvae.spec and examples/mopoe.spec's networks (one expert per modality
giving a mean and a log-variance, one decoder per modality, z of 64) with these objectives:

  mvae       Wu & Goodman's: the product of the prior and the experts of S for S in {x,w}, {x}, {w}, each with
             its own sample; the reconstruction of w weighted by 10, the KL by 1.
  mmvae      the mixture of the two experts, the stratified ELBO with one sample per expert (K = 1).
  mmvae_k10  the same with K = 10 importance samples per expert and the doubly-reparameterised gradient
             (DReG, "dreg_looser" as in Shi et al.'s code and MultiVae's MMVAE, examples/mmvae.spec).
  mopoe      the mixture over S in {x}, {w}, {x,w} of the product of S's experts (no prior expert); the mean
             over S of the ELBOs.

conv_mvae, conv_jmvae_kl: examples/fashion-mnist/conv/*.spec, MVAE's and JMVAE-kl's objectives with Wu & Goodman's
convolutional Fashion-MNIST networks written as they wrote them (nn.Conv2d and nn.ConvTranspose2d without bias,
swish, the label's embedding as a bias-free nn.Linear); not in the default list. --onednn off times them with
PyTorch's own convolutions (im2col and BLAS) instead of its bundled oneDNN.

Every term is a batch mean; Adam (lr 1e-3, betas 0.9 and 0.999, eps 1e-8) after clipping the gradient's total
norm at 5, batch 100. One epoch on Fashion-MNIST (grey levels as Bernoulli targets, one-hot labels, a fresh
shuffle), one line per model:

    torch MODEL epoch SECONDS steps N threads T kernel CORE loss L

Timing covers the training loop alone (gathering each batch, the noise, the forward and backward passes,
clipping and the Adam step), after a warm-up of a few steps; loading the data is left out, as it is from the
trainer's epoch time. Run with /usr/bin/python3 (Debian's python3-torch 1.13).

How it is made fast without changing what it computes (tests/bench_torch.py --check shows both):
  - the Adam step and the clipping are torch.optim.Adam's and clip_grad_norm_'s operations, op for op (the
    same bits: --check), with the moments and the denominator's buffer kept from step to step and the
    clipping's multiply done parameter by parameter just before the update, while the gradient is in cache;
    the multiply by a clamped 1 is skipped. torch.optim.Adam allocates two parameter-sized temporaries per
    parameter per step, and the whole update took about 25% of a step;
  - subnormal numbers are flushed to zero (torch.set_flush_denormal), as the generated trainers' Adam does:
    the first moments of gradients that stay zero (dead ReLU units, always-black pixels) decay into the
    subnormal range after about 650 steps (1.2 million of jmvae_kl's 3 million by step 800), and CPUs that
    take a slow path on them (Intel's) slow every later step;
  - glibc's malloc keeps freed memory (mallopt) instead of returning it to the kernel after every step and
    faulting it in again at the next: 2% to 20% of a step in system time here, with the heap's history
    (--malloc-default);
  - threads: --threads sets PyTorch's own threads; --blas-threads (default: $OPENBLAS_NUM_THREADS, else 1)
    sets OpenBLAS's, which torch.set_num_threads does not touch (without it OpenBLAS takes every core);
  - the networks that read the same latent rows run once on all of them (the subsets' or the experts'
    samples stacked), the noise is drawn in one call per step, each loss term is one reduction, and
    -log p(x | z) is softplus(l) - x l (one addcmul), a third cheaper than binary_cross_entropy_with_logits.
"""
import argparse
import ctypes
import gzip
import math
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


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
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------------------- terms --

def gaussian_head(raw):
    """mean and log-variance from a head's output: var = softplus(raw)."""
    d = raw.shape[-1] // 2
    return raw[..., :d], torch.log(F.softplus(raw[..., d:]))


def kl_std(m, lv):
    """KL(N(m, e^lv) || N(0, I)) summed over the last dimension."""
    return 0.5 * torch.sum(torch.exp(lv) + m * m - 1 - lv, dim=-1)


def kl_normal(m1, lv1, m2, lv2):
    """KL(N(m1, e^lv1) || N(m2, e^lv2)) summed over the last dimension."""
    return 0.5 * torch.sum(lv2 - lv1 + (torch.exp(lv1) + (m1 - m2) ** 2) / torch.exp(lv2) - 1, dim=-1)


def bernoulli_nll(logits, x):
    """-log p(x | z) of Bernoulli logits, element by element: softplus(l) - x l (x broadcast to the rows);
    a third faster than F.binary_cross_entropy_with_logits forward and backward, the same to rounding."""
    return torch.addcmul(F.softplus(logits), logits, x, value=-1)


def rec_x_sum(logits, x):
    """-log p(x | z) summed over the pixels and the rows"""
    return torch.sum(bernoulli_nll(logits, x))


def rec_w_sum(logits, w):
    """-log p(w | z) of categorical logits with one-hot w, summed over the rows (w broadcast to the rows)."""
    return -torch.sum(w * F.log_softmax(logits, dim=-1))


# ----------------------------------------------------------------------- the reference specs' models --

class JMVAE(nn.Module):
    """specs/jmvae.spec; with unimodal=True, specs/jmvae_kl.spec (alpha 0.1)."""
    noise = (64,)

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
        b = x.shape[0]
        m, lv = gaussian_head(self.q_xw(torch.cat([self.enc_x(x), self.enc_w(w)], 1)))
        z = m + torch.exp(0.5 * lv) * eps
        loss = (rec_x_sum(self.p_x(z), x) + rec_w_sum(self.p_w(z), w) + kl_std(m, lv).sum()) / b
        if self.unimodal:
            mx, lvx = gaussian_head(self.q_x(x))
            mw, lvw = gaussian_head(self.q_w(w))
            loss = loss + self.alpha / b * (kl_normal(m, lv, mx, lvx).sum() + kl_normal(m, lv, mw, lvw).sum())
        return loss


class JMVAEH(nn.Module):
    """specs/jmvae_h.spec: z2 (32) on top of z1 (64)."""
    noise = (96,)

    def __init__(self):
        super().__init__()
        self.enc_x, self.enc_w = mlp([784, 512], False), mlp([10, 512], False)
        self.h1 = mlp([1024, 512], False)
        self.q_z1 = mlp([512, 128])
        self.q_z2 = mlp([512, 512, 64])
        self.p_z1 = mlp([32, 512, 512, 128])
        self.p_x, self.p_w = mlp([64, 512, 512, 784]), mlp([64, 512, 512, 10])

    def forward(self, x, w, eps):
        b = x.shape[0]
        h = self.h1(torch.cat([self.enc_x(x), self.enc_w(w)], 1))
        m2, lv2 = gaussian_head(self.q_z2(h))
        z2 = m2 + torch.exp(0.5 * lv2) * eps[:, :32]
        m1, lv1 = gaussian_head(self.q_z1(h))
        z1 = m1 + torch.exp(0.5 * lv1) * eps[:, 32:]
        pm1, plv1 = gaussian_head(self.p_z1(z2))
        return (rec_x_sum(self.p_x(z1), x) + rec_w_sum(self.p_w(z1), w)
                + kl_normal(m1, lv1, pm1, plv1).sum() + kl_std(m2, lv2).sum()) / b


# ------------------------------------------------------ MVAE, MMVAE, MoPoE (examples/*.spec networks) --

class Experts(nn.Module):
    """q(z | x), q(z | w) (mean and log-variance) and the decoders p(x | z), p(w | z)."""

    def __init__(self, latent=64):
        super().__init__()
        self.latent = latent
        self.q_x = mlp([784, 512, 512, 2 * latent])
        self.q_w = mlp([10, 512, 512, 2 * latent])
        self.p_x = mlp([latent, 512, 512, 784])
        self.p_w = mlp([latent, 512, 512, 10])

    def experts(self, x, w):
        """[2, B, latent] means and log-variances, x's expert first."""
        h = torch.stack([self.q_x(x), self.q_w(w)])
        return h[..., :self.latent], h[..., self.latent:]


class MVAE(Experts):
    """Products of the prior and the experts of S, for S = {x}, {x,w}, {w} (each with its own noise, in
    that order: p_x reads the first two subsets' rows and p_w the last two, both contiguous)."""
    noise = (3, 64)
    lambda_w, beta = 10.0, 1.0

    def forward(self, x, w, eps):
        b, d = x.shape[0], self.latent
        (mx, mw), (lvx, lvw) = self.experts(x, w)
        px, pw = torch.exp(-lvx), torch.exp(-lvw)
        ax, aw = mx * px, mw * pw
        t = torch.stack([1 + px, 1 + px + pw, 1 + pw])        # precisions of the products, [3, B, d]
        mean = torch.stack([ax, ax + aw, aw]) / t
        lv = -torch.log(t)
        z = mean + torch.exp(0.5 * lv) * eps.transpose(0, 1)
        rx = rec_x_sum(self.p_x(z[:2].reshape(2 * b, d)).view(2, b, -1), x)
        rw = rec_w_sum(self.p_w(z[1:].reshape(2 * b, d)).view(2, b, -1), w)
        return (rx + self.lambda_w * rw + self.beta * kl_std(mean, lv).sum()) / b


class MoPoE(Experts):
    """Products of the experts of S (no prior expert) for S = {x}, {w}, {x,w}; the mean over S."""
    noise = (3, 64)

    def forward(self, x, w, eps):
        b, d = x.shape[0], self.latent
        (mx, mw), (lvx, lvw) = self.experts(x, w)
        px, pw = torch.exp(-lvx), torch.exp(-lvw)
        t = px + pw
        mean = torch.stack([mx, mw, (mx * px + mw * pw) / t])  # a single expert is its own product
        lv = torch.stack([lvx, lvw, -torch.log(t)])
        z = (mean + torch.exp(0.5 * lv) * eps.transpose(0, 1)).reshape(3 * b, d)
        rx = rec_x_sum(self.p_x(z).view(3, b, -1), x)
        rw = rec_w_sum(self.p_w(z).view(3, b, -1), w)
        return (rx + rw + kl_std(mean, lv).sum()) / (3 * b)


def log_mixture(z, mean, lv):
    """log (1/2) sum_c N(z; mean_c, e^lv_c) for the two experts c, summed over the latent dimensions.
    z: [2 (expert drawn from), B, K, d]; mean, lv: [2 (component), B, d]; result [2, B, K]."""
    diff = z.unsqueeze(1) - mean.unsqueeze(2).unsqueeze(0)       # [2, 2, B, K, d]
    lq = -0.5 * (torch.sum(diff * diff * torch.exp(-lv).unsqueeze(2), -1) + torch.sum(lv, -1).unsqueeze(-1)
                 + z.shape[-1] * LOG_2PI)
    return torch.logsumexp(lq, dim=1) - math.log(2)


class MMVAE(Experts):
    """Mixture of the two experts, stratified: K samples from each expert; K = 1 is the plain ELBO, K > 1 the
    importance-weighted bound with DReG gradients."""

    def __init__(self, k=1):
        super().__init__()
        self.k = k
        self.noise = (2, k, 64)

    def forward(self, x, w, eps):
        b, d, k = x.shape[0], self.latent, self.k
        mean, lv = self.experts(x, w)
        z = mean.unsqueeze(2) + torch.exp(0.5 * lv).unsqueeze(2) * eps.transpose(0, 1)   # [2, B, K, d]
        zr = z.reshape(2 * b * k, d)
        lx, lw = self.p_x(zr).view(2, b, k, -1), self.p_w(zr).view(2, b, k, -1)
        log_prior = -0.5 * (torch.sum(z * z, -1) + d * LOG_2PI)
        if k == 1:
            rest = log_mixture(z, mean, lv) - log_prior
            return (rec_x_sum(lx, x.unsqueeze(1)) + rec_w_sum(lw, w.unsqueeze(1)) + rest.sum()) / (2 * b)
        # log w_{m,k} = log p(z) + log p(x|z) + log p(w|z) - log q(z|X), q's parameters detached
        lpx = -torch.sum(bernoulli_nll(lx, x.unsqueeze(1)), -1)
        lpw = torch.sum(w.unsqueeze(1) * F.log_softmax(lw, dim=-1), -1)
        logw = log_prior + lpx + lpw - log_mixture(z, mean.detach(), lv.detach())
        with torch.no_grad():
            wt = torch.softmax(logw, dim=2)
        z.register_hook(lambda g: g * wt.unsqueeze(-1))
        return -torch.sum(wt * logw) / (2 * b)


# ------------------------------------------------- Wu & Goodman's convolutional networks (examples/fashion-mnist/conv) --

def swish():
    return nn.SiLU(inplace=True)


def image_encoder(out):
    """Wu & Goodman's: two convolutions of stride 2 without bias, swish, 6272 -> 512 -> out."""
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 64, 4, 2, 1, bias=False), swish(),
                         nn.Conv2d(64, 128, 4, 2, 1, bias=False), swish(), nn.Flatten(),
                         nn.Linear(6272, 512), swish(), nn.Linear(512, out))


def label_encoder(out):
    """Wu & Goodman's: the label's embedding (a bias-free map of the one-hot row), swish, 512, out."""
    return nn.Sequential(nn.Linear(10, 512, bias=False), swish(), nn.Linear(512, 512), swish(), nn.Linear(512, out))


def image_decoder(latent):
    """Wu & Goodman's: 512, 6272 viewed as [128, 7, 7], two transposed convolutions of stride 2 without bias."""
    return nn.Sequential(nn.Linear(latent, 512), swish(), nn.Linear(512, 6272), swish(), nn.Unflatten(1, (128, 7, 7)),
                         nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), swish(),
                         nn.ConvTranspose2d(64, 1, 4, 2, 1, bias=False), nn.Flatten())


def label_decoder(latent):
    return nn.Sequential(nn.Linear(latent, 512), swish(), nn.Linear(512, 512), swish(), nn.Linear(512, 512), swish(),
                         nn.Linear(512, 10))


class ConvMVAE(MVAE):
    """examples/fashion-mnist/conv/mvae.spec: MVAE's objective (as MVAE) with Wu & Goodman's networks; the
    experts' heads give the log-variance directly (var=logvar)."""

    def __init__(self, latent=64):
        nn.Module.__init__(self)
        self.latent = latent
        self.q_x, self.q_w = image_encoder(2 * latent), label_encoder(2 * latent)
        self.p_x, self.p_w = image_decoder(latent), label_decoder(latent)

    def experts(self, x, w):
        h = torch.stack([self.q_x(x), self.q_w(w)])
        return h[..., :self.latent], h[..., self.latent:]


class ConvJMVAEKL(nn.Module):
    """examples/fashion-mnist/conv/jmvae_kl.spec: JMVAE-kl (alpha 0.1) with Wu & Goodman's networks."""
    noise = (64,)

    def __init__(self, latent=64, alpha=0.1):
        super().__init__()
        self.latent, self.alpha = latent, alpha
        self.j_x = image_encoder(512)[:-1]   # the image encoder up to its 512 units (swish)
        self.j_w = nn.Sequential(nn.Linear(10, 512, bias=False), swish())
        self.q_xw = nn.Sequential(nn.Linear(1024, 512), swish(), nn.Linear(512, 2 * latent))
        self.q_x, self.q_w = image_encoder(2 * latent), label_encoder(2 * latent)
        self.p_x, self.p_w = image_decoder(latent), label_decoder(latent)

    def forward(self, x, w, eps):
        b, d = x.shape[0], self.latent
        h = self.q_xw(torch.cat([self.j_x(x), self.j_w(w)], 1))
        m, lv = h[:, :d], h[:, d:]
        z = m + torch.exp(0.5 * lv) * eps
        hx, hw = self.q_x(x), self.q_w(w)
        kl_x = kl_normal(m, lv, hx[:, :d], hx[:, d:]).sum()
        kl_w = kl_normal(m, lv, hw[:, :d], hw[:, d:]).sum()
        return (rec_x_sum(self.p_x(z), x) + rec_w_sum(self.p_w(z), w) + kl_std(m, lv).sum()
                + self.alpha * (kl_x + kl_w)) / b


MODELS = {
    "jmvae": lambda: JMVAE(False),
    "jmvae_kl": lambda: JMVAE(True),
    "jmvae_h": JMVAEH,
    "mvae": MVAE,
    "mmvae": lambda: MMVAE(1),
    "mmvae_k10": lambda: MMVAE(10),
    "mopoe": MoPoE,
    "conv_mvae": ConvMVAE,
    "conv_jmvae_kl": ConvJMVAEKL,
}
CONV_MODELS = ("conv_mvae", "conv_jmvae_kl")  # not in the default list: ten times the arithmetic


# ------------------------------------------------------------------------------------------ Adam --

class Adam:
    """clip_grad_norm_(params, max_norm) then torch.optim.Adam(params, lr, betas, eps).step(), with the
    same operations in the same order (torch 1.13's single-tensor Adam), so the same bits, but with the
    moments and the denominator's buffer kept from step to step, and each parameter's clipping multiply
    done just before its update (the multiply by a clamped 1 is skipped: it changes nothing)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, max_norm=5.0):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps, self.max_norm = lr, betas, eps, float(max_norm)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.buf = torch.empty(max(p.numel() for p in self.params), dtype=self.params[0].dtype)
        self.steps = 0

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.params]
        total = torch.norm(torch.stack([torch.norm(g, 2.0) for g in grads]), 2.0)
        coef = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
        clip = bool(coef < 1.0)
        self.steps += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1 ** self.steps)
        bc2_sqrt = math.sqrt(1 - b2 ** self.steps)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if clip:
                g.mul_(coef)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            den = self.buf[:p.numel()].view_as(p)
            torch.sqrt(v, out=den)
            den.div_(bc2_sqrt).add_(self.eps)
            p.addcdiv_(m, den, value=-step_size)
        return total


# ------------------------------------------------------------------------------------------ --check --
# Plain implementations of the same formulas, written the long way: a loop over the subsets, experts and
# importance samples, the densities and KL terms from torch.distributions, the likelihoods written out, the
# DReG gradient from a surrogate loss without hooks. In float64 on one batch, each model's loss must agree
# to 1e-10 (relative) and every gradient to 1e-9 of its norm.

def _run(seq, z, frozen=False):
    """a Sequential of layers applied by hand (F.linear, F.conv2d, F.conv_transpose2d, relu, swish written
    out, the reshapes); frozen: with its weights detached"""
    for layer in seq:
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            wt, b = layer.weight, layer.bias
            if frozen:
                wt, b = wt.detach(), None if b is None else b.detach()
            if isinstance(layer, nn.Linear):
                z = F.linear(z, wt, b)
            elif isinstance(layer, nn.Conv2d):
                z = F.conv2d(z, wt, b, stride=layer.stride, padding=layer.padding)
            else:
                z = F.conv_transpose2d(z, wt, b, stride=layer.stride, padding=layer.padding)
        elif isinstance(layer, nn.SiLU):
            z = z * torch.sigmoid(z)
        elif isinstance(layer, nn.Flatten):
            z = z.reshape(z.shape[0], -1)
        elif isinstance(layer, nn.Unflatten):
            z = z.reshape((z.shape[0],) + tuple(layer.unflattened_size))
        else:
            z = torch.relu(z)
    return z


def _nll_x(logits, x):
    return -torch.sum(x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits), -1)


def _nll_w(logits, w):
    return -torch.distributions.Categorical(logits=logits).log_prob(w.argmax(-1))


def _normal(mean, lv):
    return torch.distributions.Normal(mean, torch.exp(0.5 * lv))


def _kl_prior(q):
    return torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)


def _softplus_normal(raw):
    d = raw.shape[-1] // 2
    return torch.distributions.Normal(raw[:, :d], torch.sqrt(F.softplus(raw[:, d:])))


def reference(name, model, x, w, eps):
    """(loss, what to differentiate) by the plain formulas"""
    kl = torch.distributions.kl_divergence
    if name in ("jmvae", "jmvae_kl"):
        q = _softplus_normal(_run(model.q_xw, torch.cat([_run(model.enc_x, x), _run(model.enc_w, w)], 1)))
        z = q.loc + q.scale * eps
        loss = _nll_x(_run(model.p_x, z), x).mean() + _nll_w(_run(model.p_w, z), w).mean() + _kl_prior(q).mean()
        if name == "jmvae_kl":
            for net, data in ((model.q_x, x), (model.q_w, w)):
                loss = loss + 0.1 * kl(q, _softplus_normal(_run(net, data))).sum(-1).mean()
        return loss, loss
    if name == "conv_jmvae_kl":
        d = model.latent
        h = _run(model.q_xw, torch.cat([_run(model.j_x, x), _run(model.j_w, w)], 1))
        q = _normal(h[:, :d], h[:, d:])
        z = q.loc + q.scale * eps
        loss = _nll_x(_run(model.p_x, z), x).mean() + _nll_w(_run(model.p_w, z), w).mean() + _kl_prior(q).mean()
        for net, data in ((model.q_x, x), (model.q_w, w)):
            hu = _run(net, data)
            loss = loss + 0.1 * kl(q, _normal(hu[:, :d], hu[:, d:])).sum(-1).mean()
        return loss, loss
    if name == "jmvae_h":
        h = _run(model.h1, torch.cat([_run(model.enc_x, x), _run(model.enc_w, w)], 1))
        q2 = _softplus_normal(_run(model.q_z2, h))
        z2 = q2.loc + q2.scale * eps[:, :32]
        q1 = _softplus_normal(_run(model.q_z1, h))
        z1 = q1.loc + q1.scale * eps[:, 32:]
        p1 = _softplus_normal(_run(model.p_z1, z2))
        loss = (_nll_x(_run(model.p_x, z1), x).mean() + _nll_w(_run(model.p_w, z1), w).mean()
                + kl(q1, p1).sum(-1).mean() + _kl_prior(q2).mean())
        return loss, loss
    d = model.latent
    experts = {}
    for m, net, data in (("x", model.q_x, x), ("w", model.q_w, w)):
        h = _run(net, data)
        experts[m] = (h[:, :d], h[:, d:])
    if name in ("mvae", "conv_mvae", "mopoe"):
        mvae = name != "mopoe"
        subsets = [("x",), ("x", "w"), ("w",)] if mvae else [("x",), ("w",), ("x", "w")]
        loss = 0
        for i, subset in enumerate(subsets):
            precision = torch.ones_like(experts["x"][0]) if mvae else torch.zeros_like(experts["x"][0])
            weighted = torch.zeros_like(precision)
            for m in subset:
                mean_m, lv_m = experts[m]
                precision = precision + 1 / torch.exp(lv_m)
                weighted = weighted + mean_m / torch.exp(lv_m)
            q = torch.distributions.Normal(weighted / precision, 1 / torch.sqrt(precision))
            z = q.loc + q.scale * eps[:, i]
            if mvae:
                if "x" in subset:
                    loss = loss + _nll_x(_run(model.p_x, z), x).mean()
                if "w" in subset:
                    loss = loss + 10 * _nll_w(_run(model.p_w, z), w).mean()
                loss = loss + _kl_prior(q).mean()
            else:
                loss = loss + (_nll_x(_run(model.p_x, z), x).mean() + _nll_w(_run(model.p_w, z), w).mean()
                               + _kl_prior(q).mean()) / 3
        return loss, loss
    prior = torch.distributions.Normal(0.0, 1.0)
    if name == "mmvae":
        loss = 0
        for i, m in enumerate(("x", "w")):
            z = experts[m][0] + torch.exp(0.5 * experts[m][1]) * eps[:, i, 0]
            log_q = torch.logsumexp(torch.stack([_normal(*experts[c]).log_prob(z).sum(-1) for c in ("x", "w")]),
                                    0) - math.log(2)
            loss = loss + 0.5 * (_nll_x(_run(model.p_x, z), x) + _nll_w(_run(model.p_w, z), w)
                                 + log_q - prior.log_prob(z).sum(-1)).mean()
        return loss, loss
    # mmvae_k10: log w(z) with the decoders' weights (theta) and z's path to the experts (phi) separately
    fixed = {c: _normal(experts[c][0].detach(), experts[c][1].detach()) for c in ("x", "w")}

    def log_weight(z, frozen):
        log_q = torch.logsumexp(torch.stack([fixed[c].log_prob(z).sum(-1) for c in ("x", "w")]), 0) - math.log(2)
        return (prior.log_prob(z).sum(-1) - _nll_x(_run(model.p_x, z, frozen), x)
                - _nll_w(_run(model.p_w, z, frozen), w) - log_q)

    loss, surrogate = 0, 0
    for i, m in enumerate(("x", "w")):
        theta, phi = [], []
        for k in range(eps.shape[2]):
            z = experts[m][0] + torch.exp(0.5 * experts[m][1]) * eps[:, i, k]
            theta.append(log_weight(z.detach(), False))   # the decoders' gradient: sum_k wt_k dlogw_k
            phi.append(log_weight(z, True))               # the experts': sum_k wt_k^2 dlogw_k/dz dz
        theta, phi = torch.stack(theta, 1), torch.stack(phi, 1)
        wt = torch.softmax(theta.detach(), 1)
        loss = loss - 0.5 * (wt * theta).sum(1).mean()
        surrogate = surrogate - 0.5 * ((wt * theta).sum(1).mean() + (wt * wt * phi).sum(1).mean())
    return loss, surrogate


def check_model(name, batch=32):
    torch.manual_seed(2)
    x = torch.rand(batch, 784, dtype=torch.float64)
    x[x < 0.3] = 0                                   # some black pixels, as in the images
    w = F.one_hot(torch.randint(0, 10, (batch,)), 10).double()
    torch.manual_seed(1)
    fast = MODELS[name]().double()
    plain = MODELS[name]().double()
    plain.load_state_dict(fast.state_dict())
    eps = torch.randn((batch,) + tuple(fast.noise), dtype=torch.float64)
    lf = fast(x, w, eps)
    lf.backward()
    lp, surrogate = reference(name, plain, x, w, eps)
    surrogate.backward()
    rel = abs(float(lf) - float(lp)) / abs(float(lp))
    worst, where = 0.0, ""
    for (pname, a), b in zip(fast.named_parameters(), plain.parameters()):
        err = float(torch.linalg.vector_norm(a.grad - b.grad) / torch.linalg.vector_norm(b.grad))
        if err > worst:
            worst, where = err, pname
    ok = rel <= 1e-10 and worst <= 1e-9
    print(f"check {name}: loss {float(lf):.12g} plain {float(lp):.12g} (relative difference {rel:.1e}), "
          f"gradients: largest relative difference {worst:.1e} ({where}) {'ok' if ok else 'FAILED'}")
    return ok


def check_adam(steps=6):
    """Adam against clip_grad_norm_ and torch.optim.Adam, bit for bit, with the clipping on and off."""
    ok = True
    for max_norm in (5.0, 1e9):
        torch.manual_seed(1)
        a, b = JMVAE(True), JMVAE(True)
        b.load_state_dict(a.state_dict())
        mine = Adam(a.parameters(), max_norm=max_norm)
        ref = torch.optim.Adam(b.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        gen = torch.Generator().manual_seed(3)
        same = True
        for _ in range(steps):
            x = torch.rand(100, 784, generator=gen)
            w = F.one_hot(torch.randint(0, 10, (100,), generator=gen), 10).float()
            eps = torch.randn(100, 64, generator=gen)
            for model in (a, b):
                for p in model.parameters():
                    p.grad = None
                model(x, w, eps).backward()
            mine.step()
            torch.nn.utils.clip_grad_norm_(b.parameters(), max_norm)
            ref.step()
            same = same and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        print(f"check adam (clipping at {max_norm:g}): {steps} steps, parameters "
              f"{'the same bits as' if same else 'DIFFERENT from'} clip_grad_norm_ + torch.optim.Adam")
        ok = ok and same
    return ok


def run_checks(names):
    ok = check_adam()
    for name in names:
        ok = check_model(name) and ok
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------- driver --

def openblas():
    """The OpenBLAS that PyTorch's BLAS calls resolve to (Debian's libblas.so.3 forwards to it)."""
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib
        except (OSError, AttributeError):
            continue
    return None


def keep_freed_memory():
    """Let glibc's malloc keep the memory that is freed instead of handing it back to the kernel. By default
    blocks of 128 KiB and more (a layer's activations, every gradient) go back with munmap or a trim of the
    heap when freed, and each step's new tensors fault their pages in again: for jmvae_kl here from about
    300 page faults and 1 ms of system time a step (2%) to 3,000 and 11-15 ms (20%), as glibc's thresholds
    moved with what the process had freed before. This is what the generated trainers get from allocating
    their arenas once, and what PyTorch's CPU tuning guides get from jemalloc or tcmalloc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest: blocks up to 32 MiB come from the heap
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass


def corename(lib):
    return lib.openblas_get_corename().decode() if lib else "unknown"


def epoch(name, x, w, batch, warmup, seed):
    torch.manual_seed(seed)
    model = MODELS[name]()
    opt = Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, max_norm=5.0)
    params = list(model.parameters())
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)

    def step(idx):
        xb, wb = x.index_select(0, idx), w.index_select(0, idx)
        eps = torch.randn((len(idx),) + model.noise)
        for p in params:
            p.grad = None
        loss = model(xb, wb, eps)
        loss.backward()
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
    ap.add_argument("--threads", type=int, default=1, help="PyTorch's threads (torch.set_num_threads)")
    ap.add_argument("--blas-threads", type=int, default=0,
                    help="OpenBLAS's threads (default: $OPENBLAS_NUM_THREADS, else 1)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--onednn", choices=("on", "off"), default="on",
                    help="convolutions by PyTorch's bundled oneDNN (its default) or by its own im2col and BLAS")
    ap.add_argument("--keep-denormals", action="store_true", help="do not flush subnormal numbers to zero")
    ap.add_argument("--malloc-default", action="store_true",
                    help="leave glibc's malloc returning freed memory to the kernel (its default)")
    ap.add_argument("--check", action="store_true",
                    help="compare every model with a plain implementation of its formulas (float64), and "
                         "the Adam step with torch.optim.Adam's, instead of timing")
    ap.add_argument("models", nargs="*", default=[m for m in MODELS if m not in CONV_MODELS],
                    help=f"default: all but {', '.join(CONV_MODELS)}")
    a = ap.parse_args()
    for name in a.models:
        if name not in MODELS:
            sys.exit(f"bench_torch: no model '{name}' (one of {', '.join(MODELS)})")
    if not a.malloc_default:
        keep_freed_memory()
    if not a.keep_denormals:
        torch.set_flush_denormal(True)  # before any thread starts: PyTorch's threads inherit the setting
    torch.set_num_threads(a.threads)
    torch.backends.mkldnn.enabled = a.onednn == "on"
    lib = openblas()
    if lib:
        lib.openblas_set_num_threads(a.blas_threads or int(os.environ.get("OPENBLAS_NUM_THREADS") or 1))
    if a.check:
        sys.exit(run_checks(a.models))
    images = load_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
    labels = load_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
    if a.limit:
        images, labels = images[:a.limit], labels[:a.limit]
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    w = F.one_hot(torch.from_numpy(labels.astype(np.int64)), 10).float()
    core = corename(lib)
    for name in a.models:
        seconds, steps, loss = epoch(name, x, w, a.batch, a.warmup, a.seed)
        print(f"torch {name} epoch {seconds:.3f} steps {steps} threads {a.threads} kernel {core} loss {loss:.4f}"
              + (f" onednn {a.onednn}" if name in CONV_MODELS else ""), flush=True)


if __name__ == "__main__":
    main()
