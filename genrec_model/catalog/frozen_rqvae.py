"""A trained RQ-VAE frozen to numpy arrays: what SID assignment needs on Spark workers (no torch)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrozenRQVAE:
    """Everything assignment needs, as numpy arrays (no torch import on Spark workers)."""
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    weights: tuple[np.ndarray, ...]  # encoder Linear weights, each (out, in)
    biases: tuple[np.ndarray, ...]  # encoder Linear biases, each (out,)
    codebooks: np.ndarray  # (L, K, d)

    @property
    def n_levels(self) -> int:
        return int(self.codebooks.shape[0])

    @property
    def codebook_size(self) -> int:
        return int(self.codebooks.shape[1])

    @property
    def latent_dim(self) -> int:
        return int(self.codebooks.shape[2])

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(B, D) raw -> (B, d) float64 latents."""
        h = (np.asarray(x, dtype=np.float64) - self.mean.astype(np.float64)) / self.std.astype(np.float64)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.astype(np.float64).T + b.astype(np.float64)
            if i < len(self.weights) - 1:
                np.maximum(h, 0.0, out=h)
        return h

    def assign(self, embeddings: np.ndarray, chunk_size: int = 16384) -> np.ndarray:
        """(N, D) -> (N, L) int32 codes; memory bounded by chunk_size rows at a time."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.input_dim:
            raise ValueError(f"expected (N, {self.input_dim}) embeddings, got {embeddings.shape}")
        cbs = self.codebooks.astype(np.float64)  # (L, K, d)
        cb_sq = (cbs * cbs).sum(-1)  # (L, K)
        out = np.empty((embeddings.shape[0], self.n_levels), dtype=np.int32)
        for start in range(0, embeddings.shape[0], chunk_size):
            r = self.encode(embeddings[start:start + chunk_size])  # (B, d)
            for level in range(self.n_levels):
                idx = (cb_sq[level][None, :] - 2.0 * r @ cbs[level].T).argmin(axis=1)  # (B,)
                r = r - cbs[level][idx]
                out[start:start + len(r), level] = idx
        return out
