"""The semantic judge (genrec_model/align/judge.py): evidence definitions, negatives, user-conditional weights."""
import numpy as np
import pytest

from genrec_model.align.config import JudgeConfig
from genrec_model.align.judge import (ASPECTS, ItemSide, SemanticJudge, aspect_evidence, evaluate_judge, fit_judge,
                                      pad_histories, pairwise_auc, sample_negatives)


def test_evidence_by_hand():
    emb = np.array([[1, 0], [0, 1], [1, 1], [1, -1]], dtype=np.float32)
    items = ItemSide.build(emb, popularity=np.array([0, 1, 10, 100]), prefix=np.array([0, 0, 1, 1]))
    hist, mask = pad_histories([np.array([0, 1])], max_history=5)
    assert hist.tolist() == [[0, 1]] and mask.all()
    ev = aspect_evidence(items, hist, mask, np.array([[2, 3]]), decay=0.5)  # recency weights 1/3, 2/3
    c = 1 / np.sqrt(2)
    np.testing.assert_allclose(ev[0, 0, :4], [c / 3 + 2 * c / 3, c, c, 1 - c], atol=1e-6)  # item 2: cos .707 with both
    np.testing.assert_allclose(ev[0, 1, :4], [c / 3 - 2 * c / 3, -c, c, 1 - c], atol=1e-6)  # item 3: +.707 / -.707
    assert ev[0, 1, 4] > ev[0, 0, 4]  # more popular
    other = items.with_popularity(np.array([100, 10, 1, 0]))  # one recommend split's counts, same items
    np.testing.assert_array_equal(other.log_pop, ItemSide.build(emb, np.array([100, 10, 1, 0]), items.prefix).log_pop)
    assert other.unit is items.unit and other.log_pop[0] > other.log_pop[3]
    assert ASPECTS == ("profile", "context", "closest", "novelty", "popularity")


def test_pairwise_auc_and_negatives():
    assert pairwise_auc(np.array([1.0, 0.0]), np.array([[0.0, 2.0], [0.0, -1.0]])) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    rng = np.random.default_rng(0)
    items = ItemSide.build(rng.normal(size=(50, 4)), np.arange(50), np.arange(50) // 10)
    pos = rng.integers(0, 50, 200)
    neg = sample_negatives(items, pos, np.arange(50), 3, 4, rng)
    assert neg.shape == (200, 7) and not (neg == pos[:, None]).any()
    same = items.prefix[neg[:, 3:]] == items.prefix[pos][:, None]
    assert same.mean() > 0.9  # resampled only where a draw hit the positive itself


def _two_kinds_of_users(rng, n_items=200, d=8):
    """Half the users continue with the item closest to their last one (context), half with the most popular
    item they have not had yet (popularity); the two kinds live in different halves of the embedding space,
    so a user-conditional judge can tell them apart and a single weighting cannot serve both."""
    emb = rng.normal(size=(n_items, d)).astype(np.float32)
    emb[: n_items // 2, 0] += 4.0
    emb[n_items // 2:, 0] -= 4.0
    pop = rng.pareto(1.5, n_items) + 1
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    seqs = []
    for u in range(600):
        half = np.arange(n_items // 2) + (0 if u % 2 == 0 else n_items // 2)
        s = [int(rng.choice(half))]
        for _ in range(6):
            rest = np.setdiff1d(half, s)
            s.append(int(rest[np.argmax(unit[rest] @ unit[s[-1]])] if u % 2 == 0 else rest[np.argmax(pop[rest])]))
        seqs.append(np.array(s))
    return emb, pop, seqs


def test_user_conditional_weights_beat_uniform_and_survive_save_load(tmp_path):
    rng = np.random.default_rng(0)
    emb, pop, seqs = _two_kinds_of_users(rng)
    items = ItemSide.build(emb, pop, prefix=np.arange(len(emb)) // 20)
    hist = [s[:t] for s in seqs[:500] for t in range(1, len(s))]
    pos = np.array([s[t] for s in seqs[:500] for t in range(1, len(s))])
    cfg = JudgeConfig(epochs=30, lr=0.05, batch_size=256, eval_negatives=10)
    judge = fit_judge(items, hist, pos, pop, cfg)
    held_h, held_t = [s[:-1] for s in seqs[500:]], np.array([s[-1] for s in seqs[500:]])
    m = evaluate_judge(judge, items, held_h, held_t)
    assert m["auc_random.judge"] > 0.9
    assert m["auc_random.judge"] > m["auc_random.uniform"] + 0.02
    assert m["auc_hard.judge"] > m["auc_hard.uniform"]
    feats_weights = judge.score(items, held_h[:4], np.stack([held_t[:4], held_t[:4]], 1))
    assert np.allclose(feats_weights[:, 0], feats_weights[:, 1])
    judge.metrics = m
    judge.save(str(tmp_path / "j"))
    again = SemanticJudge.load(str(tmp_path / "j"))
    cands = np.stack([held_t, (held_t + 1) % len(emb)], 1)
    np.testing.assert_allclose(again.score(items, held_h, cands), judge.score(items, held_h, cands), rtol=1e-6)
    assert again.metrics["auc_random.judge"] == m["auc_random.judge"]
