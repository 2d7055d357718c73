"""Item-to-item transition counts (genrec_model/serve/transitions.py) and their Spark twin (udfs/transition_fns.py)."""
import numpy as np
import pytest

from genrec_model.data.splits import split_history
from genrec_model.serve.config import TransitionConfig
from genrec_model.serve.transitions import (count_transitions, from_pairs, transition_features, transition_rank)


def _dense(table):
    out = np.zeros((table.n_items, table.n_items))
    for a in range(table.n_items):
        lo, hi = table.indptr[a], table.indptr[a + 1]
        out[a, table.succ[lo:hi]] = table.weight[lo:hi]
    return out


def test_counts_weigh_successors_by_distance_and_keep_row_totals():
    cfg = TransitionConfig(window=2, decay=0.5, top_n=10)
    table = count_transitions([np.array([0, 1, 2]), np.array([1, 2])], 4, cfg)
    want = np.zeros((4, 4))
    want[0, 1], want[0, 2], want[1, 2] = 1.0, 0.5, 2.0  # 1->2 once in each history
    np.testing.assert_allclose(_dense(table), want)
    np.testing.assert_allclose(table.row_total, want.sum(axis=1))
    assert table.indptr[-1] == table.nnz == 3


def test_top_n_keeps_the_heaviest_successors_ties_by_lower_index_and_shares_use_the_full_row():
    cfg = TransitionConfig(window=1, top_n=2)
    seqs = [np.array([0, 3]), np.array([0, 3]), np.array([0, 1]), np.array([0, 2])]
    table = count_transitions(seqs, 4, cfg)
    lo, hi = table.indptr[0], table.indptr[1]
    assert table.succ[lo:hi].tolist() == [1, 3]  # 3 (weight 2), then 1 beats 2 on the tie; stored ascending
    assert table.row_total[0] == 4.0
    f = transition_features(table, [np.array([0])], np.array([[3, 1, 2, -1]]), cfg)
    np.testing.assert_allclose(f[0, :, 0], [np.log1p(2.0), np.log1p(1.0), 0.0, 0.0])
    np.testing.assert_allclose(f[0, :, 1], [0.5, 0.25, 0.0, 0.0])


def test_features_mix_the_newest_items_by_recency():
    cfg = TransitionConfig(window=1, n_recent=2, recent_decay=0.5)
    table = count_transitions([np.array([0, 2]), np.array([1, 2]), np.array([1, 3])], 5, cfg)
    # history 0 then 1 (newest last): item 1 weighs 1, item 0 weighs .5; item 4 follows nothing
    f = transition_features(table, [np.array([0, 1])], np.array([[2, 3, 4]]), cfg)
    raw = np.array([1 * 1.0 + 0.5 * 1.0, 1 * 1.0, 0.0])
    share = np.array([1 * 0.5 + 0.5 * 1.0, 1 * 0.5, 0.0]) / 1.5
    np.testing.assert_allclose(f[0, :, 0], np.log1p(raw))
    np.testing.assert_allclose(f[0, :, 1], share)
    # only the n_recent newest count: an older 0 before them changes nothing
    np.testing.assert_allclose(transition_features(table, [np.array([0, 0, 1])], np.array([[2, 3, 4]]), cfg), f)


def test_rank_orders_by_score_skips_excluded_and_fills_from_the_fill_order():
    cfg = TransitionConfig(window=1, n_recent=1)
    table = count_transitions([np.array([0, 1]), np.array([0, 1]), np.array([0, 2]), np.array([0, 3])], 6, cfg)
    fill = np.array([5, 4, 3, 2, 1, 0])
    ranked, filled = transition_rank(table, [np.array([0]), np.array([4])], 4, cfg, fill, exclude=[[0, 3], [4]])
    assert ranked[0].tolist() == [1, 2, 5, 4] and filled[0]  # 1 (2x), 2 (tie with 3, excluded), then the fill
    assert ranked[1].tolist() == [5, 3, 2, 1] and filled[1]  # item 4 has no successors: the fill, 4 skipped
    ranked, filled = transition_rank(table, [np.array([0])], 2, cfg, fill)
    assert ranked[0].tolist() == [1, 2] and not filled[0]


def test_from_pairs_refuses_duplicate_pairs():
    with pytest.raises(ValueError, match="once"):
        from_pairs(np.array([0, 0]), np.array([1, 1]), np.array([1.0, 2.0]), 3, 5)
    with pytest.raises(ValueError, match="item indices"):
        count_transitions([np.array([0, 7])], 3, TransitionConfig())


def test_split_history_holds_what_each_split_decodes_from():
    seq = np.array([5, 6, 7, 8])
    assert split_history(seq, "serve").tolist() == [5, 6, 7, 8]
    assert split_history(seq, "test").tolist() == [5, 6, 7]
    assert split_history(seq, "valid").tolist() == [5, 6]
    assert split_history(np.array([5, 6]), "valid").tolist() == []


@pytest.mark.spark
def test_spark_table_matches_the_numpy_counts_per_split_without_withheld_items(spark):
    """The recommend/ranker jobs' table (Spark pair sums, top_n cut in Spark) = count_transitions over each
    split's histories with every withheld item's event removed."""
    from genrec_model.data.splits import cold_item_mask
    from udfs.transition_fns import transition_table

    rng = np.random.default_rng(0)
    ids = np.array([f"i{n:02d}" for n in range(15)])  # sorted strings: Spark's dst tie order = index order
    seqs, rows = [], []
    for u in range(60):
        seq = rng.integers(0, len(ids), size=int(rng.integers(1, 9)))
        seqs.append(seq)
        rows += [(f"u{u}", str(ids[i]), p) for p, i in enumerate(seq)]
    inter = spark.createDataFrame(rows, "user_id string, item_id string, seq_pos int")
    share, seed = 0.2, 1
    cold = cold_item_mask(ids, share, seed)
    assert cold.any()
    cfg = TransitionConfig(window=3, decay=0.5, top_n=4)
    for split in ("serve", "test", "valid"):
        got = transition_table(inter, split, None, ids, cfg, share, seed)
        kept = [s[~cold[s]] for s in (split_history(s, split) for s in seqs)]
        want = count_transitions(kept, len(ids), cfg)
        np.testing.assert_allclose(got.row_total, want.row_total, err_msg=split)
        np.testing.assert_array_equal(got.indptr, want.indptr, err_msg=split)
        np.testing.assert_array_equal(got.succ, want.succ, err_msg=split)
        np.testing.assert_allclose(got.weight, want.weight, err_msg=split)
        assert not np.isin(got.succ, np.flatnonzero(cold)).any()
