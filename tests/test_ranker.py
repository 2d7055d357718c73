"""The learned re-ranking of decoded candidates (genrec_model/serve/ranker.py)."""
import numpy as np
import pytest

from genrec_model.align.config import JudgeConfig
from genrec_model.align.judge import ItemSide, SemanticJudge
from genrec_model.serve.config import TransitionConfig
from genrec_model.serve.ranker import (FEATURES, Ranker, candidate_features, fit_ranker, ranked_metrics,
                                       target_columns)
from genrec_model.serve.transitions import count_transitions, transition_features


def _judge(n_aspects=5, d=4):
    return SemanticJudge(np.zeros((d + 2, n_aspects), np.float32), np.zeros(n_aspects, np.float32),
                         np.zeros(n_aspects, np.float32), np.ones(n_aspects, np.float32), JudgeConfig(max_history=5),
                         manifest={"version": "j-test"})


def test_features_are_the_judge_its_aspects_and_the_transitions_and_padding_is_zero():
    rng = np.random.default_rng(0)
    items = ItemSide.build(rng.normal(size=(30, 4)), np.arange(30), np.arange(30) // 5)
    judge = _judge()
    hist = [np.array([1, 2, 3]), np.array([7])]
    cands = np.array([[4, 5, -1], [8, 9, 10]])
    lp = np.array([[-1.0, -2.0, -np.inf], [-0.5, -1.5, -3.0]])
    tcfg = TransitionConfig(window=1)
    table = count_transitions([np.array([3, 4, 5]), np.array([7, 9]), np.array([7, 8])], 30, tcfg)
    level0 = np.log(np.full((2, 6), 1 / 6))
    level0[1, 1] = np.log(0.5)
    f = candidate_features(judge, items, hist, cands, lp, (table, tcfg), level0, chunk=1)
    assert f.shape == (2, 3, len(FEATURES)) and np.isfinite(f).all()
    pre = FEATURES.index("prefix_log_prob")
    np.testing.assert_allclose(f[:, :2, pre], [[np.log(1 / 6)] * 2, [np.log(0.5), np.log(0.5)]])  # prefix 8 // 5
    assert (f[:, :, FEATURES.index("is_new")] == 0).all()
    tr = FEATURES.index("transition")
    np.testing.assert_allclose(f[:, :, tr:tr + 2], transition_features(table, hist, cands, tcfg))
    assert f[0, 0, tr] > 0 and f[1, 1, tr] > 0 and f[1, 2, tr] == 0  # 3 -> 4 and 7 -> 9 were counted
    np.testing.assert_array_equal(f[0, 2], 0.0)
    np.testing.assert_allclose(f[:, :2, 0], lp[:, :2])
    np.testing.assert_allclose(f[:, :, 1], np.where(cands >= 0, judge.score(items, hist, np.maximum(cands, 0)), 0),
                               rtol=1e-5, atol=1e-6)
    closest = np.max(items.unit[8] @ items.unit[[7]].T)
    assert f[1, 0, FEATURES.index("closest")] == pytest.approx(closest, abs=1e-5)


TRUE_W = (1.0, 0.0, 0.0, 0.0, 2.0, 0.5, 0.7, 0.0, 0.3, -1.0, 0.0, 0.0)


def _synthetic(rng, users=3000, c=20, true_w=TRUE_W):
    """Candidates whose held-out item is drawn from softmax(features . true_w)."""
    feats = rng.normal(size=(users, c, len(FEATURES)))
    valid = rng.random((users, c)) > 0.1
    logits = np.where(valid, feats @ np.asarray(true_w), -np.inf)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    target = np.array([rng.choice(c, p=row) for row in p])
    target[rng.random(users) < 0.3] = -1  # held-out item not among the candidates
    return feats, valid, target


def test_fit_recovers_the_weights_and_beats_log_prob_alone(tmp_path):
    rng = np.random.default_rng(1)
    feats, valid, target = _synthetic(rng)
    ranker = fit_ranker(feats, valid, target, l2=1e-4)
    w = ranker.weights / ranker.std  # back to raw feature units
    np.testing.assert_allclose(w, TRUE_W, atol=0.15)
    test_f, test_v, test_t = _synthetic(np.random.default_rng(2))
    learned = ranked_metrics(ranker.score(test_f, test_v), test_t, 5)
    alone = ranked_metrics(np.where(test_v, test_f[:, :, 0], -np.inf), test_t, 5)
    assert learned["ndcg@5"] > alone["ndcg@5"] + 0.05
    ranker.manifest = {"model_version": "m-1", "judge_version": "j-1"}
    ranker.save(str(tmp_path))
    back = Ranker.load(str(tmp_path))
    np.testing.assert_array_equal(back.score(test_f, test_v), ranker.score(test_f, test_v))
    assert back.manifest["model_version"] == "m-1"


def test_fit_refuses_no_signal_and_bad_targets():
    feats = np.zeros((3, 4, len(FEATURES)))
    valid = np.ones((3, 4), bool)
    with pytest.raises(ValueError, match="nothing to fit"):
        fit_ranker(feats, valid, np.array([-1, -1, -1]))
    valid[0, 1] = False
    with pytest.raises(ValueError, match="invalid candidate"):
        fit_ranker(feats, valid, np.array([1, 0, 0]))


def test_target_columns_and_ranked_metrics_by_hand():
    cands = np.array([[5, 6, 7], [1, 2, 3], [9, 8, 7]])
    valid = np.array([[True, True, True], [True, False, True], [True, True, True]])
    cols = target_columns(cands, valid, np.array([7, 2, 4]))
    assert cols.tolist() == [2, -1, -1]  # user 1's target is not servable (seen), user 2's not a candidate
    scores = np.array([[0.0, 1.0, 1.0], [0, 0, 0], [0, 0, 0]], dtype=float)
    m = ranked_metrics(scores, cols, 1)  # tie with column 1 ranks the target second
    assert m == {"recall@1": 0.0, "ndcg@1": 0.0}
    m = ranked_metrics(scores, cols, 2)
    assert m["recall@2"] == pytest.approx(1 / 3) and m["ndcg@2"] == pytest.approx(1 / np.log2(3) / 3)
