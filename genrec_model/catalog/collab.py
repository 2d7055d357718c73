"""Collaborative item embeddings from interaction sequences, fused with text embeddings.

SIGMA-style unified space: RQ-VAE input = [text part, collaborative part]. The collaborative
part is PPMI + truncated SVD of a windowed co-occurrence matrix (Levy & Goldberg 2014). The
Spark job computes the same (rows, cols, counts) distributed and calls `ppmi_svd_embeddings`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds


def cooccurrence_counts(sequences: Iterable[Sequence[int]], window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric counts of item pairs at distance 1..window inside one sequence.

    Each ordered occurrence pair (s[k], s[k+d]), 1 <= d <= window, adds 1 to (a, b) and to (b, a);
    pairs of an item with itself are dropped. Returns (rows, cols, counts) int64, sorted by
    (row, col), each pair once.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
    flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    seq_id = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])  # (T,)
    left, right = [], []
    for d in range(1, window + 1):
        same = seq_id[:-d] == seq_id[d:]  # pair stays inside one sequence
        left.append(flat[:-d][same])
        right.append(flat[d:][same])
    a = np.concatenate(left) if left else np.zeros(0, np.int64)
    b = np.concatenate(right) if right else np.zeros(0, np.int64)
    keep = a != b
    a, b = a[keep], b[keep]
    rows, cols = np.concatenate([a, b]), np.concatenate([b, a])
    if rows.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), empty.copy()
    n = int(max(rows.max(), cols.max())) + 1
    keys, counts = np.unique(rows * n + cols, return_counts=True)  # sorted by (row, col)
    return keys // n, keys % n, counts.astype(np.int64)


def ppmi_svd_embeddings(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, n_items: int, dim: int,
                        seed: int = 0, cds_alpha: float = 0.75) -> np.ndarray:
    """PPMI of the co-occurrence matrix, factorized by truncated SVD -> (n_items, dim) float32.

    Embedding = U * sqrt(S) (symmetric split). cds_alpha smooths the context distribution
    (Levy et al. 2015), damping PMI of rare items. Signs are fixed (largest |entry| of each
    column positive) and columns sorted by singular value, so the output is deterministic.
    Items without any co-occurrence get zero rows.
    """
    if not 0 < dim < n_items:
        raise ValueError(f"need 0 < dim < n_items, got dim={dim}, n_items={n_items}")
    c = sp.coo_matrix((np.asarray(counts, np.float64), (rows, cols)), shape=(n_items, n_items)).tocsr()
    c.sum_duplicates()
    total = c.sum()
    if total == 0:
        return np.zeros((n_items, dim), np.float32)
    row_sum = np.asarray(c.sum(1)).ravel()  # (N,)
    ctx = np.asarray(c.sum(0)).ravel() ** cds_alpha  # (N,)
    ctx_p = ctx / ctx.sum()
    coo = c.tocoo()
    pmi = np.log(coo.data / total) - np.log(row_sum[coo.row] / total) - np.log(ctx_p[coo.col])
    keep = pmi > 0
    m = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n_items, n_items))
    v0 = np.random.default_rng(seed).standard_normal(n_items)
    u, s, _ = svds(m, k=dim, v0=v0, solver="arpack")
    order = np.argsort(-s, kind="stable")
    u, s = u[:, order], s[order]
    signs = np.sign(u[np.abs(u).argmax(0), np.arange(dim)])
    signs[signs == 0] = 1.0
    emb = u * signs * np.sqrt(s)
    emb[row_sum == 0] = 0.0
    return emb.astype(np.float32)


def _l2_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def fuse_embeddings(text: np.ndarray, collab: np.ndarray, collab_weight: float) -> np.ndarray:
    """Concat L2-normalized parts scaled by sqrt(1-w) and sqrt(w) -> (N, Dt+Dc) float32.

    Squared distances then mix as (1-w) * text + w * collab, rows with both parts have norm 1,
    and items without collaborative signal (zero collab row) keep zeros in that part.
    """
    if not 0.0 <= collab_weight <= 1.0:
        raise ValueError("collab_weight must be in [0, 1]")
    if text.shape[0] != collab.shape[0]:
        raise ValueError(f"row counts differ: text {text.shape[0]}, collab {collab.shape[0]}")
    t = _l2_rows(np.asarray(text, np.float64)) * np.sqrt(1.0 - collab_weight)
    c = _l2_rows(np.asarray(collab, np.float64)) * np.sqrt(collab_weight)
    return np.concatenate([t, c], axis=1).astype(np.float32)
