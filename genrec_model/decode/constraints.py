"""Pluggable decoding constraints (LogitsProcessor-like, docs/CONTRACTS.md).

A constraint is called once per level with the code prefixes decoded so far and the scores of that
level's code range, and returns new scores with disallowed codes set to -inf. It never modifies its
inputs. The model knows nothing of the catalog; the trie is one implementation.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from genrec_model.decode.trie import SidTrie


class EmptyAllowedSetError(ValueError):
    """A live beam has no allowed continuation (the prefix is not in the catalog)."""


class Constraint(Protocol):
    def __call__(self, prefix_codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """prefix_codes (N, d) int codes of levels 0..d-1; scores (N, level_sizes[d]) -> masked copy."""
        ...


class NoConstraint:
    """Unconstrained decoding (ablation): every code of the level is allowed."""

    def __call__(self, prefix_codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        _check_shapes(prefix_codes, scores)
        return np.array(scores, copy=True)


class TrieConstraint:
    """Allows only codes that extend the prefix to a prefix of some catalog item."""

    def __init__(self, trie: SidTrie):
        self.trie = trie

    def __call__(self, prefix_codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        _check_shapes(prefix_codes, scores)
        level = prefix_codes.shape[1]
        if level >= self.trie.n_levels:
            raise ValueError(f"prefix of length {level} is already a full SID (L={self.trie.n_levels})")
        if scores.shape[1] != self.trie.level_sizes[level]:
            raise ValueError(f"scores width {scores.shape[1]} != level_sizes[{level}]={self.trie.level_sizes[level]}")
        nodes = self.trie.walk(prefix_codes)
        allowed = self.trie.allowed_mask(level, nodes)
        empty = ~allowed.any(axis=1)
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise EmptyAllowedSetError(f"no allowed code after prefix {prefix_codes[row].tolist()} (row {row})")
        return np.where(allowed, scores, -np.inf).astype(scores.dtype, copy=False)


def _check_shapes(prefix_codes: np.ndarray, scores: np.ndarray) -> None:
    if prefix_codes.ndim != 2 or scores.ndim != 2 or prefix_codes.shape[0] != scores.shape[0]:
        raise ValueError(f"prefix_codes (N, d) and scores (N, S) expected, got {prefix_codes.shape}, {scores.shape}")
