"""The running top-`width` of the beam search kernels (beam_search.topk_children, fused_head.topk_children_fused)."""
from __future__ import annotations

import numba


@numba.njit(inline="always")
def insert_candidate(best, parent, code, child, b, width, count, s, r, c, j):
    """Insert a candidate (score s, beam row r, code c, trie child j) into user b's descending lists, which
    hold `count` entries (the caller skips candidates not above the current worst once full); returns the
    new count. A later equal score never overtakes an earlier one (the kernels' tie rule)."""
    pos = count if count < width else width - 1
    while pos > 0 and best[b, pos - 1] < s:
        if pos < width:
            best[b, pos] = best[b, pos - 1]
            parent[b, pos] = parent[b, pos - 1]
            code[b, pos] = code[b, pos - 1]
            child[b, pos] = child[b, pos - 1]
        pos -= 1
    best[b, pos] = s
    parent[b, pos] = r
    code[b, pos] = c
    child[b, pos] = j
    return count + 1 if count < width else count
