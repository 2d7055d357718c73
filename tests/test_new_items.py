"""Items the generator never saw in training as the ranker's candidates (genrec_model/serve/new_items.py)."""
import numpy as np
import pandas as pd
import pytest

from genrec_model.align.config import JudgeConfig
from genrec_model.align.judge import ItemSide, SemanticJudge
from genrec_model.baselines.config import ContentKNNConfig
from genrec_model.baselines.content_knn import user_profiles
from genrec_model.data.splits import cold_item_mask
from genrec_model.serve.config import ServingConfig, TransitionConfig
from genrec_model.serve.new_items import content_candidates, pseudo_new_mask, with_new_candidates
from genrec_model.serve.ranker import FEATURES, Ranker, ranker_candidates
from genrec_model.serve.transitions import count_transitions


def _judge(n_aspects=5, d=4):
    return SemanticJudge(np.zeros((d + 2, n_aspects), np.float32), np.full(n_aspects, 0.1, np.float32),
                         np.zeros(n_aspects, np.float32), np.ones(n_aspects, np.float32), JudgeConfig(max_history=5))


def test_pseudo_new_draws_a_seeded_share_of_eligible_items_independent_of_the_withheld_draw():
    ids = np.array([f"i{n}" for n in range(20000)])
    eligible = np.arange(20000) % 3 != 0
    a = pseudo_new_mask(ids, eligible, 0.05, 0)
    assert not a[~eligible].any() and 0.04 < a[eligible].mean() < 0.06
    np.testing.assert_array_equal(a, pseudo_new_mask(ids[::-1], eligible[::-1], 0.05, 0)[::-1])  # order-free
    assert (a != pseudo_new_mask(ids, eligible, 0.05, 1)).any()
    withheld = cold_item_mask(ids, 0.05, 0)
    assert abs((a & withheld).sum() / max(withheld[eligible].sum(), 1) - 0.05) < 0.03  # independent draws


def test_content_candidates_are_the_closest_pool_items_to_the_profile_unseen():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(50, 8))
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    pool = np.zeros(50, dtype=bool)
    pool[10:30] = True
    hist = [np.array([1, 12, 3]), np.array([40]), np.array([5, 6])]
    cfg = ContentKNNConfig(n_recent=2, decay=0.5)
    got = content_candidates(unit, hist, pool, 4, cfg, batch=2)
    prof = user_profiles(unit, hist, cfg)
    for u, h in enumerate(hist):
        cand = [i for i in range(10, 30) if i not in h]
        want = sorted(cand, key=lambda i: -prof[u] @ unit[i])[:4]
        assert got[u].tolist() == want
    assert content_candidates(unit, hist, np.zeros(50, bool), 4, cfg).tolist() == [[-1] * 4] * 3
    assert content_candidates(unit, hist, pool, 25, cfg)[0, -6:].tolist() == [-1] * 6  # 19 unseen in the pool


def test_with_new_candidates_moves_new_items_out_of_the_beams():
    cands = np.array([[3, 7, -1], [7, 2, 5]])
    lp = np.array([[-1.0, -2.0, -np.inf], [-0.5, -1.0, -2.0]])
    is_new = np.zeros(10, dtype=bool)
    is_new[[7, 8, 9]] = True
    items, out_lp, new = with_new_candidates(cands, lp, is_new, np.array([[8, 7], [9, -1]]))
    assert items.tolist() == [[3, -1, -1, 8, 7], [-1, 2, 5, 9, -1]]
    assert out_lp[0].tolist() == [-1.0, -np.inf, -np.inf, 0.0, 0.0] and np.isneginf(out_lp[1, [0, 4]]).all()
    assert new.tolist() == [[False, False, False, True, True], [False, False, False, True, False]]


def _world(rng, n=40, d=4):
    e = rng.normal(size=(n, d))
    items = ItemSide.build(e, np.arange(n, dtype=float), np.arange(n) % 4)
    tcfg = TransitionConfig(window=1)
    table = count_transitions([np.arange(n)], n, tcfg)  # i -> i + 1
    return items, (table, tcfg)


def test_new_candidates_carry_content_and_prefix_only():
    rng = np.random.default_rng(1)
    items, trans = _world(rng)
    judge = _judge()
    pool = np.zeros(40, dtype=bool)
    pool[30:] = True
    hist = [np.array([1, 2]), np.array([5])]
    cands = np.array([[3, 31, 4], [6, 7, 8]])
    lp = np.array([[-1.0, -1.5, -2.0], [-0.2, -0.9, -3.0]])
    level0 = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]))
    c, out_lp, f = ranker_candidates(judge, items, hist, cands, lp, level0, trans, pool, 3)
    assert c.shape == (2, 6) and c[0, 1] == -1 and set(c[0, 3:]) <= set(range(30, 40)) and 31 not in c[0, :3]
    col = {name: n for n, name in enumerate(FEATURES)}
    new = c >= 30
    assert (f[..., col["is_new"]] == new).all()
    assert (f[new][:, [col["log_prob"], col["transition"], col["transition_share"]]] == 0).all()
    np.testing.assert_allclose(f[new][:, col["new_judge"]], f[new][:, col["judge"]])
    np.testing.assert_allclose(f[..., col["prefix_log_prob"]][c >= 0],
                               np.take_along_axis(level0, items.prefix[np.maximum(c, 0)], 1)[c >= 0])
    assert f[0, 0, col["transition"]] > 0  # 2 -> 3 was counted: a warm candidate keeps its counts
    plain = ranker_candidates(judge, items, hist, cands, lp, level0, trans, pool, 0)
    assert plain[0].shape == (2, 3) and (plain[2][..., col["is_new"]] == 0).all()


def _ranker(is_new_weight):
    w = np.zeros(len(FEATURES))
    w[FEATURES.index("log_prob")] = 1.0
    w[FEATURES.index("is_new")] = is_new_weight
    return Ranker(w, np.zeros(len(FEATURES)), np.ones(len(FEATURES)))


def test_served_lists_take_new_items_as_the_ranker_weighs_them(tmp_path):
    """Through the decode path of the job: with serving.new_item_candidates the ranker's is_new weight decides
    whether tonight's new items (which the beams do not return as such) reach the lists."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from genrec_model.decode.config import BeamSearchConfig
    from genrec_model.model.artifacts import write_export_manifest
    from genrec_model.model.config import SeqModelConfig
    from genrec_model.model.export import export_onnx
    from genrec_model.model.seq_model import SeqModel
    from genrec_model.model.sid_vocab import SidVocab
    from udfs.recommend_fns import DecodeInputs, build_decoder, recommend_users

    vocab = SidVocab((4, 4, 3))
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=2, d_model=16, d_ff=32,
                                    dropout=0.0)).eval()
    write_export_manifest(str(tmp_path), export_onnx(model, vocab, str(tmp_path), "m1", "cb1"))
    rng = np.random.default_rng(0)
    codes = np.unique(np.stack([rng.integers(0, s, 40) for s in vocab.level_sizes], 1), axis=0)
    n = len(codes)
    item_ids = np.array([f"i{k}" for k in range(n)])
    seen = np.ones(n, dtype=bool)
    seen[::4] = False
    dec = build_decoder(str(tmp_path), item_ids, codes, 20, 1, False, "cb1", seen)
    side = ItemSide.build(rng.normal(size=(n, 4)), np.ones(n), codes[:, 0])
    tcfg = TransitionConfig()
    trans = (count_transitions([np.arange(n)], n, tcfg), tcfg)
    users = pd.DataFrame({"user_id": ["u0", "u1"], "history": [["i1", "i3"], ["i5"]]})
    beam = BeamSearchConfig(beam_width=12, top_k=12, normalize="level")
    serving = ServingConfig(top_k=5, ranker=True, new_item_candidates=3)
    lists = {}
    for w in (-50.0, 50.0):
        inputs = DecodeInputs(np.ones(n), beam, serving, judge=(_judge(), side), ranker=_ranker(w), transitions=trans)
        lists[w] = [[r["item_id"] for r in recs] for recs in recommend_users(users, dec, inputs)["recs"]]
    new = set(item_ids[~seen])
    assert all(not (set(r) & new) for r in lists[-50.0])
    for r, h in zip(lists[50.0], users["history"]):
        assert set(r[:3]) <= new and not set(r) & set(h)
