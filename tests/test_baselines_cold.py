"""Cold-start protocol for the baselines: no interaction with a withheld item reaches popularity or
SASRec training; evaluation cases keep full histories and the targets `evaluate` scores."""
import numpy as np

from genrec_model.baselines.cold_start import baseline_data, warm_only
from genrec_model.data.splits import split_sequence
from genrec_model.serve.popularity import popularity_counts

# items 0..5; item 2 and item 5 are cold
COLD = np.array([False, False, True, False, False, True])
SEQS = [np.array([0, 2, 1, 3, 4]),   # cold item inside the training prefix
        np.array([2, 2, 0, 1]),      # cold items only at the start
        np.array([1, 0, 5, 3]),      # cold item is the valid target
        np.array([3, 4, 2]),         # cold item is the test target
        np.array([2, 5, 1])]         # training prefix cold only: no training events, valid history cold only


def test_training_prefixes_hold_no_cold_item():
    data = baseline_data(SEQS, COLD)
    # prefixes (all but the last two events): [0 2 1] [2 2] [1 0] [3] [2]
    assert [t.tolist() for t in data.train] == [[0, 1], [], [1, 0], [3], []]
    counts = popularity_counts(data.train, len(COLD))
    assert counts[COLD].sum() == 0  # a leak of any cold interaction would count here
    assert counts.tolist() == [2, 2, 0, 1, 0, 0]
    assert data.cold_events_dropped == 1 + 2 + 0 + 0 + 1


def test_early_stopping_examples_hold_no_cold_item():
    data = baseline_data(SEQS, COLD)
    got = [(e.history.tolist(), e.target) for e in data.valid_train]
    # user 1's valid history [2 2] is all cold; users 2 and 4 have a cold valid target (5): dropped
    assert got == [([0, 1], 3), ([3], 4)]
    for e in data.valid_train:
        assert not COLD[e.history].any() and not COLD[e.target]


def test_evaluation_cases_keep_full_histories_and_targets():
    data = baseline_data(SEQS, COLD)
    for split, idx in (("test", 2), ("valid", 1)):
        want = [(u, split_sequence(s, 10 ** 9)[idx]) for u, s in enumerate(SEQS)]
        got = data.cases[split]
        assert [u for u, _ in got] == [u for u, ex in want if ex is not None]
        for (u, ex), (_, ref) in zip(got, [w for w in want if w[1] is not None]):
            assert ex.target == ref.target and ex.history.tolist() == ref.history.tolist()
    assert data.cases["test"][3][1].target == 2  # a cold target stays: it is the cold segment


def test_warm_only():
    assert warm_only(np.array([2, 0, 5, 1]), COLD).tolist() == [0, 1]
    assert warm_only(np.array([], dtype=np.int64), COLD).tolist() == []


def test_no_share_changes_nothing():
    data = baseline_data(SEQS, np.zeros(6, dtype=bool))
    assert [t.tolist() for t in data.train] == [split_sequence(s, 10 ** 9)[0].tolist() for s in SEQS]
    assert data.cold_events_dropped == 0
