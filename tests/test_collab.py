import numpy as np
import pytest

from genrec_model.catalog.collab import cooccurrence_counts, fuse_embeddings, ppmi_svd_embeddings


def test_cooccurrence_counts_exact():
    # seq 1: 0 1 2 1 ; seq 2: 3 0 ; window 2
    rows, cols, counts = cooccurrence_counts([[0, 1, 2, 1], [3, 0]], window=2)
    got = {(int(r), int(c)): int(n) for r, c, n in zip(rows, cols, counts)}
    # d=1: (0,1) (1,2) (2,1) (3,0); d=2: (0,2) (1,1)->self dropped; symmetric
    assert got == {(0, 1): 1, (1, 0): 1, (1, 2): 2, (2, 1): 2, (0, 3): 1, (3, 0): 1, (0, 2): 1, (2, 0): 1}
    assert list(zip(rows.tolist(), cols.tolist())) == sorted(got)  # sorted by (row, col)
    # pairs never cross a sequence boundary: (1, 3) would come from the concatenation
    assert (1, 3) not in got
    w1 = cooccurrence_counts([[0, 1, 2, 1], [3, 0]], window=1)
    assert dict(zip(zip(w1[0].tolist(), w1[1].tolist()), w1[2].tolist()))[(1, 2)] == 2


def test_cooccurrence_edge_cases():
    r, c, n = cooccurrence_counts([[5], []], window=3)
    assert r.size == c.size == n.size == 0
    with pytest.raises(ValueError):
        cooccurrence_counts([[1, 2]], window=0)


def test_ppmi_svd_groups_and_determinism():
    # two communities {0,1,2} and {3,4,5} that never co-occur; item 6 never interacts
    seqs = [[0, 1, 2, 0, 2, 1]] * 3 + [[3, 4, 5, 3, 5, 4]] * 3
    rows, cols, counts = cooccurrence_counts(seqs, window=2)
    emb = ppmi_svd_embeddings(rows, cols, counts, n_items=7, dim=2, seed=0)
    assert emb.shape == (7, 2) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb, ppmi_svd_embeddings(rows, cols, counts, 7, 2, seed=0))
    assert np.all(emb[6] == 0)
    unit = emb[:6] / np.linalg.norm(emb[:6], axis=1, keepdims=True)
    sim = unit @ unit.T
    assert sim[0, 1] > 0.99 and sim[3, 4] > 0.99 and abs(sim[0, 3]) < 0.01


def test_fuse_embeddings_dims_and_norms():
    text = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]], np.float32)
    collab = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]], np.float32)
    fused = fuse_embeddings(text, collab, collab_weight=0.36)
    assert fused.shape == (3, 5) and fused.dtype == np.float32
    np.testing.assert_allclose(fused[0], [0.6 * 0.8, 0.8 * 0.8, 0, 0, 0.6], atol=1e-6)
    np.testing.assert_allclose(fused[1], [0.8, 0, 0, 0, 0], atol=1e-6)  # no collab signal: zeros
    np.testing.assert_allclose(np.linalg.norm(fused[[0, 2]], axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError):
        fuse_embeddings(text, collab[:2], 0.5)
    with pytest.raises(ValueError):
        fuse_embeddings(text, collab, 1.5)
