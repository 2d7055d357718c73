import numpy as np
import pytest

from genrec_model.serve.popularity import popularity_counts, popularity_order, popularity_rank


def test_counts_from_training_sequences_only():
    counts = popularity_counts([np.array([0, 2, 2]), np.array([2, 3]), np.array([], dtype=np.int64)], n_items=5)
    assert counts.tolist() == [1, 0, 3, 1, 0]


def test_order_breaks_ties_by_lower_index():
    assert popularity_order(np.array([1, 0, 3, 1, 0])).tolist() == [2, 0, 3, 1, 4]


def test_rank_without_exclusion_is_the_same_list_for_everyone():
    ranked = popularity_rank(np.array([1, 0, 3, 1, 0]), n_users=2, k=3)
    assert ranked.tolist() == [[2, 0, 3], [2, 0, 3]]


def test_rank_with_seen_items_excluded_and_padding():
    counts = np.array([1, 0, 3, 1, 0])
    ranked = popularity_rank(counts, n_users=3, k=3, exclude=[np.array([2]), np.array([0, 3, 3]), np.array([])])
    assert ranked.tolist() == [[0, 3, 1], [2, 1, 4], [2, 0, 3]]
    ranked = popularity_rank(counts, n_users=1, k=4, exclude=[np.array([0, 1, 2])])
    assert ranked.tolist() == [[3, 4, -1, -1]]


def test_rank_rejects_wrong_exclude_length():
    with pytest.raises(ValueError):
        popularity_rank(np.array([1, 2]), n_users=2, k=1, exclude=[np.array([0])])
