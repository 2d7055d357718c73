"""Packed trie over Semantic-ID code tuples (STATIC layout, arXiv 2602.22647).

Nodes are numbered per level: level d holds the distinct code prefixes of length d, in lexicographic
order (level 0 is the root, level L the leaves = items). Because the prefixes are sorted, the children
of a node at level d are one contiguous run of level d+1 nodes, so each level is a CSR:
`indptr[d]` (n_nodes[d] + 1,) and `child_code[d]` (n_nodes[d+1],) with codes ascending inside a run;
the child node id is simply its position. `leaf_item` maps leaf node ids to item indices.
Where `n_nodes[d] * level_sizes[d]` fits `dense_max_entries`, a dense table `dense[d]`
(n_nodes[d], level_sizes[d]) -> child node id or -1 gives O(1) lookups and masks for the first levels.

The Numba kernels live in this module (importable, `cache=True`) and take the arrays of one level.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

NO_NODE = -1


@dataclass(frozen=True)
class TrieConfig:
    dense_max_entries: int = 1 << 22  # dense table for a level only if n_nodes * level_size <= this


@dataclass(frozen=True, eq=False)
class SidTrie:
    level_sizes: tuple[int, ...]
    n_nodes: tuple[int, ...]  # per level 0..L (level 0 = root, level L = leaves)
    indptr: tuple[np.ndarray, ...]  # L arrays, int64 (n_nodes[d] + 1,)
    child_code: tuple[np.ndarray, ...]  # L arrays, int32 (n_nodes[d + 1],), ascending within a node
    leaf_item: np.ndarray  # int64 (n_nodes[L],) item index of each leaf
    dense: tuple[np.ndarray | None, ...]  # L entries, int32 (n_nodes[d], level_sizes[d]) or None

    @property
    def n_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def n_items(self) -> int:
        return len(self.leaf_item)

    def subtree_allowed(self, item_mask: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Per level d, a bool per level-(d+1) node: its subtree holds an item with item_mask True (all True
        for None). A search restricted to those items keeps its scores normalized over every child."""
        if item_mask is None:
            return tuple(np.ones(len(c), dtype=np.bool_) for c in self.child_code)
        leaf = np.asarray(item_mask, dtype=bool)[self.leaf_item]
        out = [leaf]
        for d in range(self.n_levels - 1, 0, -1):
            counts = np.add.reduceat(out[0].astype(np.int64), self.indptr[d][:-1]) if len(out[0]) else out[0]
            empty = self.indptr[d][:-1] == self.indptr[d][1:]
            out.insert(0, (counts > 0) & ~empty)
        return tuple(out)

    def max_children(self, level: int) -> int:
        """Largest number of children of a level-`level` node."""
        ptr = self.indptr[level]
        return int(np.diff(ptr).max()) if len(ptr) > 1 else 0

    def children(self, level: int, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Valid children of a batch of level-`level` nodes (NO_NODE rows have none).

        Returns `row_ptr` (N+1,), `codes` and `child_nodes` (row_ptr[-1],): row i's children are
        `codes[row_ptr[i]:row_ptr[i+1]]`, ascending.
        """
        return expand_children(np.ascontiguousarray(nodes, dtype=np.int64), self.indptr[level], self.child_code[level])

    def walk(self, prefixes: np.ndarray) -> np.ndarray:
        """(N, d) code prefixes -> (N,) level-d node ids, NO_NODE where the prefix is not in the trie."""
        prefixes = np.ascontiguousarray(prefixes, dtype=np.int64)
        if prefixes.ndim != 2 or prefixes.shape[1] > self.n_levels:
            raise ValueError(f"prefixes must be (N, d) with d <= {self.n_levels}, got {prefixes.shape}")
        nodes = np.zeros(prefixes.shape[0], dtype=np.int64)
        for d in range(prefixes.shape[1]):
            nodes = self.step(d, nodes, prefixes[:, d])
        return nodes

    def step(self, level: int, nodes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Child of each level-`level` node along `codes`, NO_NODE when absent."""
        nodes = np.ascontiguousarray(nodes, dtype=np.int64)
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        dense = self.dense[level]
        if dense is not None:
            return dense_step(nodes, codes, dense)
        return csr_step(nodes, codes, self.indptr[level], self.child_code[level])

    def allowed_mask(self, level: int, nodes: np.ndarray) -> np.ndarray:
        """(N, level_sizes[level]) bool: which codes may follow each node."""
        nodes = np.ascontiguousarray(nodes, dtype=np.int64)
        dense = self.dense[level]
        if dense is not None:
            out = dense[np.maximum(nodes, 0)] >= 0
            out[nodes < 0] = False
            return out
        return csr_mask(nodes, self.indptr[level], self.child_code[level], self.level_sizes[level])

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """(N, L) full code tuples -> (N,) item index, -1 when the tuple is not an item."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.n_levels:
            raise ValueError(f"codes must be (N, {self.n_levels}), got {codes.shape}")
        leaves = self.walk(codes)
        return np.where(leaves >= 0, self.leaf_item[np.maximum(leaves, 0)], -1)


def build_trie(codes: np.ndarray, level_sizes: tuple[int, ...] | list[int], cfg: TrieConfig = TrieConfig()) -> SidTrie:
    """Trie over (N, L) item codes (row i = item index i). Tuples must be unique and within level_sizes."""
    codes = np.asarray(codes, dtype=np.int64)
    sizes = tuple(int(s) for s in level_sizes)
    if codes.ndim != 2 or codes.shape[1] != len(sizes) or codes.shape[0] == 0:
        raise ValueError(f"codes must be (N>0, {len(sizes)}), got {codes.shape}")
    if (codes < 0).any() or (codes >= np.asarray(sizes)).any():
        raise ValueError("code out of range for level_sizes")
    n, n_levels = codes.shape
    order = np.lexsort(codes.T[::-1])  # lexicographic by level 0, 1, ...
    sc = codes[order]
    # new_prefix[d][i]: sorted row i starts a new length-(d+1) prefix
    differs = np.ones((n, n_levels), dtype=bool)
    differs[1:] = sc[1:] != sc[:-1]
    new_prefix = np.cumsum(differs, axis=1) > 0  # (N, L) prefix of length d+1 differs from previous row
    if not new_prefix[:, -1].all():
        dup = sc[np.flatnonzero(~new_prefix[:, -1])[0]]
        raise ValueError(f"duplicate code tuple {dup.tolist()}")
    node_of_row = [np.zeros(n, dtype=np.int64)]  # level 0: root
    for d in range(n_levels):
        node_of_row.append(np.cumsum(new_prefix[:, d]) - 1)
    n_nodes = tuple([1] + [int(node_of_row[d + 1][-1]) + 1 for d in range(n_levels)])
    indptr, child_code, dense = [], [], []
    for d in range(n_levels):
        starts = np.flatnonzero(new_prefix[:, d])  # first sorted row of each level-(d+1) node
        parent = node_of_row[d][starts]
        ptr = np.zeros(n_nodes[d] + 1, dtype=np.int64)
        np.add.at(ptr, parent + 1, 1)
        indptr.append(np.cumsum(ptr))
        cc = sc[starts, d].astype(np.int32)
        child_code.append(cc)
        if n_nodes[d] * sizes[d] <= cfg.dense_max_entries:
            table = np.full((n_nodes[d], sizes[d]), NO_NODE, dtype=np.int32)
            table[parent, cc] = np.arange(n_nodes[d + 1], dtype=np.int32)
            dense.append(table)
        else:
            dense.append(None)
    leaf_item = np.empty(n, dtype=np.int64)
    leaf_item[node_of_row[n_levels]] = order
    return SidTrie(sizes, n_nodes, tuple(indptr), tuple(child_code), leaf_item, tuple(dense))


# ---------------------------------------------------------------- Numba kernels (one level's arrays)


@numba.njit(cache=True)
def expand_children(nodes, indptr, child_code):
    n = nodes.shape[0]
    row_ptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        c = 0
        if nodes[i] >= 0:
            c = indptr[nodes[i] + 1] - indptr[nodes[i]]
        row_ptr[i + 1] = row_ptr[i] + c
    codes = np.empty(row_ptr[n], dtype=np.int64)
    child_nodes = np.empty(row_ptr[n], dtype=np.int64)
    for i in range(n):
        if nodes[i] < 0:
            continue
        s = indptr[nodes[i]]
        for j in range(row_ptr[i + 1] - row_ptr[i]):
            codes[row_ptr[i] + j] = child_code[s + j]
            child_nodes[row_ptr[i] + j] = s + j
    return row_ptr, codes, child_nodes


@numba.njit(cache=True)
def csr_find(node, code, indptr, child_code):
    """Child node of `node` with `code` (binary search in its sorted run), -1 if absent."""
    lo = indptr[node]
    hi = indptr[node + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if child_code[mid] < code:
            lo = mid + 1
        else:
            hi = mid
    if lo < indptr[node + 1] and child_code[lo] == code:
        return lo
    return -1


@numba.njit(cache=True)
def csr_step(nodes, codes, indptr, child_code):
    out = np.empty(nodes.shape[0], dtype=np.int64)
    for i in range(nodes.shape[0]):
        out[i] = -1 if nodes[i] < 0 else csr_find(nodes[i], codes[i], indptr, child_code)
    return out


@numba.njit(cache=True)
def dense_step(nodes, codes, dense):
    out = np.empty(nodes.shape[0], dtype=np.int64)
    size = dense.shape[1]
    for i in range(nodes.shape[0]):
        if nodes[i] < 0 or codes[i] < 0 or codes[i] >= size:
            out[i] = -1
        else:
            out[i] = dense[nodes[i], codes[i]]
    return out


@numba.njit(cache=True)
def csr_mask(nodes, indptr, child_code, size):
    out = np.zeros((nodes.shape[0], size), dtype=np.bool_)
    for i in range(nodes.shape[0]):
        if nodes[i] < 0:
            continue
        for j in range(indptr[nodes[i]], indptr[nodes[i] + 1]):
            out[i, child_code[j]] = True
    return out
