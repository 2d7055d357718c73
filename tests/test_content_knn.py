"""content-knn on cases small enough to compute by hand."""
import numpy as np
import pytest

from genrec_model.baselines.config import ContentKNNConfig
from genrec_model.baselines.content_knn import (MISSING_SCORE, content_knn_rank, content_knn_scores, normalize_rows,
                                                recency_weights, top_k_rows)

# 5 items in 2-d; item 4 has no embedding
EMB = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
S = 1 / np.sqrt(2)


def test_recency_weights_newest_weighs_one():
    assert recency_weights(3, 0.5).tolist() == [0.25, 0.5, 1.0]
    assert recency_weights(1, 0.5).tolist() == [1.0]


def test_scores_are_recency_weighted_mean_cosines():
    unit, present = normalize_rows(EMB)
    assert present.tolist() == [True, True, True, True, False]
    cfg = ContentKNNConfig(n_recent=2, decay=0.5)
    # history [3, 0, 1]: last two are 0 (weight .5) and 1 (weight 1); item 3 is past n_recent
    got = content_knn_scores(unit, [np.array([3, 0, 1])], cfg)[0]
    cos = {0: (1.0, 0.0), 1: (0.0, 1.0), 2: (S, S), 3: (-1.0, 0.0)}  # cos(c, item 0), cos(c, item 1)
    want = [(0.5 * a + 1.0 * b) / 1.5 for a, b in (cos[c] for c in range(4))] + [MISSING_SCORE]
    assert got == pytest.approx(want)
    # unknown (-1) and embedding-less history items are skipped before the last n_recent are taken
    again = content_knn_scores(unit, [np.array([0, -1, 1, 4])], cfg)[0]
    assert again == pytest.approx(want)


def test_rank_full_catalog_seen_filter_and_ties():
    cfg = ContentKNNConfig(n_recent=1, decay=1.0)
    # history [0]: scores 1, 0, S, -1, missing -> order 0, 2, 1, 3, 4
    assert content_knn_rank(EMB, [np.array([0])], k=5, cfg=cfg).tolist() == [[0, 2, 1, 3, 4]]
    # seen items removed; the list is short when too few items remain
    ranked = content_knn_rank(EMB, [np.array([0])], k=5, cfg=cfg, exclude=[np.array([0, 2])])
    assert ranked.tolist() == [[1, 3, 4, -1, -1]]
    # ties go to the lower index, also across the k-th place
    assert top_k_rows(np.array([[0.5, 0.9, 0.5, 0.5]]), 2).tolist() == [[1, 0]]
    assert top_k_rows(np.array([[0.1, -np.inf, 0.3]]), 3).tolist() == [[2, 0, -1]]


def test_cold_items_are_ranked_from_text_alone():
    """An item no one interacted with is scored like any other: here it is the best match."""
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]], dtype=np.float32)  # item 2: new, close to item 0
    ranked = content_knn_rank(emb, [np.array([1, 0])], k=1, cfg=ContentKNNConfig(n_recent=1),
                              exclude=[np.array([1, 0])])
    assert ranked.tolist() == [[2]]


def test_batches_give_the_same_ranking():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8)).astype(np.float32)
    hist = [rng.integers(0, 40, size=rng.integers(1, 6)) for _ in range(13)]
    cfg = ContentKNNConfig(n_recent=3, decay=0.7)
    one = content_knn_rank(emb, hist, 7, cfg, exclude=hist, batch_size=1024)
    assert (one == content_knn_rank(emb, hist, 7, cfg, exclude=hist, batch_size=4)).all()
    # reference: the formula over every item, one user at a time
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for u, h in enumerate(hist):
        last = h[-3:]
        w = 0.7 ** np.arange(len(last) - 1, -1, -1)
        s = (unit @ unit[last].T @ w) / w.sum()
        s[h] = -np.inf
        assert one[u].tolist() == np.lexsort((np.arange(40), -s))[:7].tolist()


def test_config_validation():
    with pytest.raises(ValueError):
        ContentKNNConfig(n_recent=0)
    with pytest.raises(ValueError):
        ContentKNNConfig(decay=0.0)
