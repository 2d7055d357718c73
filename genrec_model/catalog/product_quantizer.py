"""Product quantization of item text embeddings: the content codes of a content item representation.

The embedding (N, d) is cut into M subspaces of d/M dims; each gets its own k-means codebook of K
centroids, and an item's code in subspace m is its nearest centroid there. M codes of K values name
almost every item uniquely (K^M combinations), yet every code is shared by ~N/K items, so a new
item's codes were all seen in training (RPG, RecJPQ: items as a sum of code embeddings).
"""
from __future__ import annotations

import numpy as np
import torch

from genrec_model.catalog.rqvae import kmeans, nearest_code


def fit_product_quantizer(x: np.ndarray, n_subspaces: int, codebook_size: int, iters: int = 20,
                          seed: int = 0) -> np.ndarray:
    """Centroids (M, K, d/M) of each subspace of x (N, d)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] % n_subspaces:
        raise ValueError(f"product quantizer: embedding width {x.shape[-1]} is not divisible into "
                         f"{n_subspaces} subspaces (train.model.item_codebooks)")
    gen = torch.Generator().manual_seed(seed)
    parts = torch.from_numpy(x).reshape(len(x), n_subspaces, -1)
    return torch.stack([kmeans(parts[:, m], codebook_size, iters, gen) for m in range(n_subspaces)]).numpy()


def pq_encode(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Codes (N, M) int64 of x (N, d) under centroids (M, K, d/M)."""
    m = centroids.shape[0]
    parts = x.reshape(x.shape[0], m, -1)
    return torch.stack([nearest_code(parts[:, j], centroids[j]) for j in range(m)], dim=1)
