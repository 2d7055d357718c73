import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_model.decode.trie import NO_NODE, TrieConfig, build_trie

# items (index: codes), given out of lexicographic order on purpose
CODES = np.array([[2, 2], [0, 2], [1, 0], [0, 1]])
SIZES = (3, 3)
DENSE = TrieConfig()
CSR_ONLY = TrieConfig(dense_max_entries=0)


@pytest.mark.parametrize("cfg", [DENSE, CSR_ONLY])
def test_packed_layout_exact(cfg):
    t = build_trie(CODES, SIZES, cfg)
    assert t.n_nodes == (1, 3, 4)
    assert t.indptr[0].tolist() == [0, 3] and t.child_code[0].tolist() == [0, 1, 2]
    assert t.indptr[1].tolist() == [0, 2, 3, 4] and t.child_code[1].tolist() == [1, 2, 0, 2]
    assert t.leaf_item.tolist() == [3, 1, 2, 0]  # leaves (0,1) (0,2) (1,0) (2,2)
    if cfg is DENSE:
        assert t.dense[0].tolist() == [[0, 1, 2]]
        assert t.dense[1].tolist() == [[NO_NODE, 0, 1], [2, NO_NODE, NO_NODE], [NO_NODE, NO_NODE, 3]]
    else:
        assert t.dense == (None, None)


@pytest.mark.parametrize("cfg", [DENSE, CSR_ONLY])
def test_children_walk_mask_lookup(cfg):
    t = build_trie(CODES, SIZES, cfg)
    row_ptr, codes, nodes = t.children(1, np.array([2, -1, 0]))
    assert row_ptr.tolist() == [0, 1, 1, 3]
    assert codes.tolist() == [2, 1, 2] and nodes.tolist() == [3, 0, 1]
    assert t.walk(np.array([[0], [2], [1]])).tolist() == [0, 2, 1]
    assert t.walk(np.array([[0, 2], [1, 1], [2, 2]])).tolist() == [1, NO_NODE, 3]
    assert t.allowed_mask(1, np.array([0, 1, -1])).tolist() == [
        [False, True, True], [True, False, False], [False, False, False]]
    assert t.lookup(np.array([[2, 2], [0, 1], [1, 2], [0, 0]])).tolist() == [0, 3, -1, -1]


def test_rejects_duplicates_and_out_of_range():
    with pytest.raises(ValueError, match="duplicate"):
        build_trie(np.array([[0, 1], [0, 1]]), (2, 2))
    with pytest.raises(ValueError, match="out of range"):
        build_trie(np.array([[0, 2]]), (2, 2))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(0, 2**31 - 1), st.booleans())
def test_random_trie_roundtrip(n_levels, seed, dense):
    rng = np.random.default_rng(seed)
    sizes = tuple(int(s) for s in rng.integers(1, 5, n_levels))
    all_codes = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, n_levels)
    codes = all_codes[rng.permutation(len(all_codes))[: rng.integers(1, len(all_codes) + 1)]]
    t = build_trie(codes, sizes, DENSE if dense else CSR_ONLY)
    assert t.lookup(codes).tolist() == list(range(len(codes)))
    items = {tuple(c) for c in codes.tolist()}
    for d in range(n_levels):  # allowed mask == brute-force set of next codes
        prefixes = np.unique(codes[:, :d], axis=0) if d else np.zeros((1, 0), dtype=np.int64)
        mask = t.allowed_mask(d, t.walk(prefixes))
        for p, row in zip(prefixes.tolist(), mask):
            expect = {c[d] for c in items if list(c[:d]) == p}
            assert set(np.flatnonzero(row).tolist()) == expect


def test_subtree_allowed_marks_nodes_above_the_chosen_items():
    codes = np.array([[0, 0], [0, 1], [1, 0], [2, 1]])
    trie = build_trie(codes, [3, 2])
    lvl0, lvl1 = trie.subtree_allowed(np.array([False, True, False, False]))
    assert lvl0.tolist() == [True, False, False]  # prefixes 0, 1, 2: only 0 holds item 1
    assert [bool(lvl1[trie.walk(codes[i:i + 1])[0]]) for i in range(4)] == [False, True, False, False]
    assert all(a.all() for a in trie.subtree_allowed(None))
