"""Residual-quantized VAE (RQ-VAE) that turns item embeddings into Semantic ID codes.

Layout (nanoGPT-style): `RQVAEConfig`, the torch modules, a short `train_rqvae` loop and a
frozen numpy-only `FrozenRQVAE.assign` that Spark partitions call. Training and the numpy path
share one definition of "nearest code": squared L2 on residuals, computed in float64, first
index on ties, so `FrozenRQVAE.assign` and `RQVAE.assign` give identical codes.

Deviation from CONVENTIONS 12 (no training loop in the model file): the loop is ~60 lines and
tied to dead-code reset and k-means init, which need the quantizer's internals; it stays here.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec_model.catalog.config import RQVAEConfig
from genrec_model.catalog.frozen_rqvae import FrozenRQVAE

# ----------------------------------------------------------------------------- modules

def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def nearest_code(r: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for each residual. r (B, d), codebook (K, d) -> (B,)."""
    # ||r||^2 is constant per row; argmin of ||c||^2 - 2 r.c (same formula as the numpy path)
    dist = (codebook * codebook).sum(-1)[None, :] - 2.0 * r @ codebook.T  # (B, K)
    return dist.argmin(dim=-1)


class ResidualQuantizer(nn.Module):
    def __init__(self, cfg: RQVAEConfig):
        super().__init__()
        self.cfg = cfg
        # (L, K, d); loss-trained codebooks (codebook loss + beta * commitment, as in TIGER)
        self.codebooks = nn.Parameter(torch.randn(cfg.n_levels, cfg.codebook_size, cfg.latent_dim))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, d) -> (z_q straight-through (B, d), codes (B, L), vq loss scalar)."""
        residual = z
        z_q = torch.zeros_like(z)
        codes = []
        loss = z.new_zeros(())
        for level in range(self.cfg.n_levels):
            cb = self.codebooks[level]  # (K, d)
            idx = nearest_code(residual.detach(), cb.detach())  # (B,)
            q = cb[idx]  # (B, d)
            loss = loss + F.mse_loss(q, residual.detach()) + self.cfg.beta * F.mse_loss(residual, q.detach())
            z_q = z_q + q
            residual = residual - q.detach()
            codes.append(idx)
        z_q_st = z + (z_q - z).detach()  # straight-through estimator
        return z_q_st, torch.stack(codes, dim=1), loss


class RQVAE(nn.Module):
    def __init__(self, cfg: RQVAEConfig):
        super().__init__()
        self.cfg = cfg
        dims = [cfg.input_dim, *cfg.hidden_dims, cfg.latent_dim]
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])
        self.quantizer = ResidualQuantizer(cfg)
        # scaler stored with the model; identity until fitted
        self.register_buffer("mean", torch.zeros(cfg.input_dim))
        self.register_buffer("std", torch.ones(cfg.input_dim))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x_scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x_scaled (B, D) -> (reconstruction (B, D), codes (B, L), vq loss)."""
        z = self.encoder(x_scaled)  # (B, d)
        z_q, codes, vq_loss = self.quantizer(z)
        return self.decoder(z_q), codes, vq_loss

    @torch.no_grad()
    def residuals(self, x_scaled: torch.Tensor) -> list[torch.Tensor]:
        """Residual entering each level, [(B, d)] * L (plus the final one)."""
        r = self.encoder(x_scaled)
        out = [r]
        for level in range(self.cfg.n_levels):
            cb = self.quantizer.codebooks[level]
            r = r - cb[nearest_code(r, cb)]
            out.append(r)
        return out

    @torch.no_grad()
    def assign(self, embeddings: np.ndarray) -> np.ndarray:
        """Reference torch path: (N, D) raw embeddings -> (N, L) int32 codes, float64 math."""
        m = copy.deepcopy(self).double().eval()
        x = m.scale(torch.from_numpy(np.asarray(embeddings, dtype=np.float64)))
        z = m.encoder(x)
        codes = []
        for level in range(self.cfg.n_levels):
            cb = m.quantizer.codebooks[level]
            idx = nearest_code(z, cb)
            z = z - cb[idx]
            codes.append(idx)
        return torch.stack(codes, 1).numpy().astype(np.int32)


# ----------------------------------------------------------------------------- frozen numpy path

def freeze(model: RQVAE) -> FrozenRQVAE:
    linears = [m for m in model.encoder if isinstance(m, nn.Linear)]
    f32 = lambda t: t.detach().cpu().numpy().astype(np.float32).copy()  # noqa: E731
    return FrozenRQVAE(
        mean=f32(model.mean), std=f32(model.std),
        weights=tuple(f32(m.weight) for m in linears), biases=tuple(f32(m.bias) for m in linears),
        codebooks=f32(model.quantizer.codebooks),
    )


# ----------------------------------------------------------------------------- training

@dataclass
class TrainReport:
    epoch_loss: list[float] = field(default_factory=list)
    epoch_recon_mse: list[float] = field(default_factory=list)
    epoch_utilization: list[list[float]] = field(default_factory=list)  # per level, share of K used
    epoch_dead_reset: list[list[int]] = field(default_factory=list)  # codes re-seeded per level
    final_recon_mse: float = float("nan")  # on standardized inputs, whole training set
    final_utilization: list[float] = field(default_factory=list)
    n_train: int = 0
    train_seconds: float = 0.0  # everything: scaler, k-means init, epochs, final pass
    init_seconds: float = 0.0  # scaler + k-means init (fixed cost, not per epoch)


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """Deterministic k-means (k-means++ seeding + Lloyd). x (N, d) -> centroids (k, d)."""
    n = x.shape[0]
    if n < k:  # too few points: repeat them (dead-code reset fixes the duplicates later)
        x = x[torch.arange(k) % n]
        n = k
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype)
    centroids[0] = x[torch.randint(n, (1,), generator=gen)]
    d2 = ((x - centroids[0]) ** 2).sum(-1)  # (N,)
    for j in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        centroids[j] = x[torch.multinomial(probs, 1, generator=gen)]
        d2 = torch.minimum(d2, ((x - centroids[j]) ** 2).sum(-1))
    for _ in range(iters):
        idx = nearest_code(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).to(x.dtype)
        nonempty = counts > 0
        centroids[nonempty] = sums[nonempty] / counts[nonempty, None]
    return centroids


@torch.no_grad()
def _kmeans_init(model: RQVAE, x: torch.Tensor, gen: torch.Generator) -> None:
    cfg = model.cfg
    sample = x[torch.randperm(x.shape[0], generator=gen)[: cfg.kmeans_init_size]]
    r = model.encoder(sample)
    for level in range(cfg.n_levels):
        cb = kmeans(r, cfg.codebook_size, cfg.kmeans_iters, gen)
        model.quantizer.codebooks[level] = cb
        r = r - cb[nearest_code(r, cb)]


@torch.no_grad()
def _reset_dead_codes(model: RQVAE, x: torch.Tensor, counts: torch.Tensor,
                      opt: torch.optim.Optimizer, gen: torch.Generator) -> list[int]:
    """Re-seed codes used < threshold times from level residuals of random inputs."""
    cfg = model.cfg
    cb = model.quantizer.codebooks
    n_reset = []
    for level in range(cfg.n_levels):
        dead = (counts[level] < cfg.dead_code_threshold).nonzero().flatten()
        n_reset.append(int(dead.numel()))
        if dead.numel() == 0:
            continue
        rows = torch.randint(x.shape[0], (dead.numel(),), generator=gen)
        # residuals at this level with the current (already re-seeded above) codebooks
        cb.data[level, dead] = model.residuals(x[rows])[level]
        state = opt.state.get(cb, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][level, dead] = 0.0
    return n_reset


def train_rqvae(embeddings: np.ndarray, cfg: RQVAEConfig) -> tuple[RQVAE, TrainReport]:
    """Train on (N, D) float32 embeddings; deterministic for cfg.seed (same threads/machine)."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    if data.ndim != 2 or data.shape[1] != cfg.input_dim:
        raise ValueError(f"expected (N, {cfg.input_dim}) embeddings, got {tuple(data.shape)}")
    if cfg.train_sample_size is not None and cfg.train_sample_size < data.shape[0]:
        data = data[torch.randperm(data.shape[0], generator=gen)[: cfg.train_sample_size].sort().values]
    model = RQVAE(cfg)
    if cfg.standardize:
        model.mean.copy_(data.mean(0))
        model.std.copy_(data.std(0).clamp_min(1e-6))
    x = model.scale(data)  # (N, D)
    n = x.shape[0]
    if cfg.kmeans_init:
        _kmeans_init(model, x, gen)
    init_seconds = time.perf_counter() - t0
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    report = TrainReport(n_train=n, init_seconds=init_seconds)
    for epoch in range(cfg.epochs):
        model.train()
        counts = torch.zeros(cfg.n_levels, cfg.codebook_size, dtype=torch.long)
        tot_loss = tot_mse = 0.0
        for batch_idx in torch.randperm(n, generator=gen).split(cfg.batch_size):
            xb = x[batch_idx]  # (B, D)
            recon, codes, vq_loss = model(xb)
            mse = F.mse_loss(recon, xb)
            loss = mse + vq_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for level in range(cfg.n_levels):
                counts[level] += torch.bincount(codes[:, level], minlength=cfg.codebook_size)
            tot_loss += loss.item() * len(batch_idx)
            tot_mse += mse.item() * len(batch_idx)
        report.epoch_loss.append(tot_loss / n)
        report.epoch_recon_mse.append(tot_mse / n)
        report.epoch_utilization.append(((counts > 0).float().mean(1)).tolist())
        last = epoch == cfg.epochs - 1
        if cfg.dead_code_reset and not last:
            report.epoch_dead_reset.append(_reset_dead_codes(model, x, counts, opt, gen))
    model.eval()
    with torch.no_grad():
        mse_sum = 0.0
        used = torch.zeros(cfg.n_levels, cfg.codebook_size, dtype=torch.bool)
        for chunk in x.split(cfg.assign_chunk_size):
            recon, codes, _ = model(chunk)
            mse_sum += F.mse_loss(recon, chunk, reduction="sum").item()
            for level in range(cfg.n_levels):
                used[level, codes[:, level]] = True
    report.final_recon_mse = mse_sum / x.numel()
    report.final_utilization = used.float().mean(1).tolist()
    report.train_seconds = time.perf_counter() - t0
    return model, report
