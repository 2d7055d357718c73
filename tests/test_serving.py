import numpy as np
import pytest

from genrec_model.serve.config import ServingConfig
from genrec_model.serve.serving import (
    adaptive_weights,
    log_popularity_prior,
    needs_fallback,
    recommend,
)

LN = np.log
# catalog of 6 items; popularity counts -> popular order 5, 0, 3, 1, 2, 4 (ties by index)
POP = np.array([5, 3, 1, 4, 0, 9])
CATS = np.array([0, 0, 1, 1, 2, 0])


def test_popularity_prior_exact():
    lp = log_popularity_prior(np.array([1, 0, 3]), alpha=1.0)
    np.testing.assert_allclose(np.exp(lp), [2 / 7, 1 / 7, 4 / 7])


def test_filter_seen_truncate_and_fill():
    items = np.array([[2, 1, 3, -1], [4, 0, 1, 2]])
    scores = LN(np.array([[0.5, 0.3, 0.1, 1.0], [0.4, 0.3, 0.2, 0.1]]))
    hist = [np.array([1, 5]), np.array([0])]
    recs = recommend(items, scores, hist, POP, ServingConfig(top_k=3))
    # user 0: 1 is seen -> [2, 3], then popular unseen not already listed: 0
    assert recs.items.tolist() == [[2, 3, 0], [4, 1, 2]]
    assert recs.from_model.tolist() == [[True, True, False], [True, True, True]]
    np.testing.assert_allclose(recs.scores[0, :2], LN([0.5, 0.1]))
    np.testing.assert_allclose(recs.scores[0, 2], log_popularity_prior(POP)[0])
    assert recs.fallback.tolist() == [False, False]
    recs = recommend(items, scores, hist, POP, ServingConfig(top_k=3, filter_seen=False, fill_with_popular=False))
    assert recs.items.tolist() == [[2, 1, 3], [4, 0, 1]]


def test_fallback_users_get_popularity_flagged():
    items = np.array([[2, 1], [3, 4], [1, 2]])
    scores = np.zeros((3, 2))
    hist = [np.array([], dtype=np.int64), np.array([-1, -1]), np.array([3])]
    assert needs_fallback(hist).tolist() == [True, True, False]
    recs = recommend(items, scores, hist, POP, ServingConfig(top_k=2, fill_with_popular=False))
    assert recs.items.tolist() == [[5, 0], [5, 0], [1, 2]]
    assert recs.fallback.tolist() == [True, True, False]
    assert not recs.from_model[:2].any()


def test_popularity_fusion_reranks():
    items = np.array([[4, 5]])  # item 4: p=.6, count 0; item 5: p=.4, count 9
    scores = LN(np.array([[0.6, 0.4]]))
    lp = log_popularity_prior(POP)
    recs = recommend(items, scores, [np.array([0])], POP, ServingConfig(top_k=2, fusion_weight=0.5))
    assert recs.items.tolist() == [[5, 4]]
    np.testing.assert_allclose(recs.scores, [[0.5 * LN(0.4) + 0.5 * lp[5], 0.5 * LN(0.6) + 0.5 * lp[4]]])
    recs = recommend(items, scores, [np.array([0])], POP, ServingConfig(top_k=2, fusion_weight=0.1))
    assert recs.items.tolist() == [[4, 5]]


def test_category_prior_greedy():
    # candidates 0 (cat 0, .5), 1 (cat 0, .3), 2 (cat 1, .2); penalty .5
    items = np.array([[0, 1, 2]])
    scores = LN(np.array([[0.5, 0.3, 0.2]]))
    cfg = ServingConfig(top_k=3, fusion_weight=0.5, prior="category", category_penalty=0.5, filter_seen=False)
    recs = recommend(items, scores, [np.array([4])], POP, cfg, categories=CATS)
    # after placing 0: item 1 scores .5*ln.3 + .5*ln.5 = ln(.3*.5)/2 < item 2 .5*ln.2 -> 2 before 1
    assert recs.items.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(recs.scores, scores[:, [0, 2, 1]])
    with pytest.raises(ValueError):
        recommend(items, scores, [np.array([4])], POP, cfg)


def test_adaptive_weights_exact():
    logp = np.array([[LN(0.5), LN(0.5)], [0.0, LN(1e-300)], [LN(0.7), -np.inf]])
    w = adaptive_weights(logp, 0.4)
    np.testing.assert_allclose(w, [0.4, 0.0, 0.0], atol=1e-12)


def test_new_item_slots_go_to_the_best_new_items_not_seen_and_not_already_listed():
    items = np.array([[0, 1, 2, 3, 4, 5], [0, 9, 1, 2, 3, 4]])
    scores = np.log(np.array([[.3, .2, .1, .05, .04, .03]] * 2))
    is_new = np.isin(np.arange(10), [7, 8, 9])
    new = (np.array([[9, 7, 8], [9, -1, -1]]), np.log(np.array([[.02, .01, .005], [.2, 1, 1]])), is_new)
    hist = [np.array([7]), np.array([5])]
    r = recommend(items, scores, hist, np.ones(10), ServingConfig(top_k=4, new_item_share=0.5), new=new)
    # user 0: the head keeps the model's top 2; slots 3-4 take new items 9 and 8 (7 is in the history)
    np.testing.assert_array_equal(r.items[0], [0, 1, 9, 8])
    # user 1: its only new item is already in the head, so the list's own items keep the slots
    np.testing.assert_array_equal(r.items[1], [0, 9, 1, 2])
    assert r.from_model.all()
    plain = recommend(items, scores, hist, np.ones(10), ServingConfig(top_k=4), new=new)
    np.testing.assert_array_equal(plain.items[0], [0, 1, 2, 3])  # share 0: the search result is ignored


def test_new_item_share_is_validated():
    with pytest.raises(ValueError):
        ServingConfig(new_item_share=1.5)


def test_new_item_boost_adds_one_constant_to_new_items_and_merges_the_new_search():
    items = np.array([[0, 9, 1, 2]])  # item 9 is new and already decoded
    scores = np.log(np.array([[.4, .1, .2, .05]]))
    is_new = np.isin(np.arange(10), [8, 9])
    new = (np.array([[9, 8]]), np.log(np.array([[.1, .06]])), is_new)
    cfg = ServingConfig(top_k=3, new_item_boost=float(np.log(3.0)))
    r = recommend(items, scores, [np.array([5])], np.ones(10), cfg, new=new)
    # boosted: 9 -> .3, 8 -> .18; ranking .4 (0), .3 (9), .2 (1)
    np.testing.assert_array_equal(r.items[0], [0, 9, 1])
    np.testing.assert_allclose(r.scores[0], np.log([.4, .3, .2]))
    r = recommend(items, scores, [np.array([5])], np.ones(10), ServingConfig(top_k=3), new=new)
    np.testing.assert_array_equal(r.items[0], [0, 1, 9])  # no boost: the model's own order
