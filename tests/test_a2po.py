"""A2PO post-training (genrec_model/align/a2po.py): rewards, advantages, candidate log-probabilities, the loop."""
import copy

import numpy as np
import pytest
import torch

from genrec_model.align.a2po import (AlignTask, a2po_advantages, advantages, align_policy, business_reward,
                                     candidate_logprobs, group_normalize)
from genrec_model.align.config import PolicyConfig
from genrec_model.decode.beam_search import left_pad
from genrec_model.decode.trie import build_trie
from genrec_model.model.config import SeqModelConfig
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab, history_tokens
from genrec_model.model.trainer import item_siblings, sequence_loss


def test_business_reward_hit_value_and_rank_penalty():
    cands = np.array([[3, 1, 2, -1], [0, 1, 2, 3]])
    r = business_reward(cands, np.array([1, 9]), rank_penalty=0.5)
    assert r[0, 1] == 1.0 and r[0, 3] == 0.0  # the hit; an empty slot
    assert r[0, 0] == pytest.approx(-0.5) and r[0, 2] == pytest.approx(-0.5 / np.log2(4))
    assert (np.diff(r[1]) > 0).all()  # no hit: the most confident wrong beam costs most
    valued = business_reward(cands, np.array([1, 9]), 0.5, value=np.arange(10) * 2.0)
    assert valued[0, 1] == 2.0 and valued[0, 0] == r[0, 0]


def test_group_normalize_per_row_over_valid_entries():
    r = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0]])
    valid = np.array([[True, True, True, False], [True] * 4])
    a = group_normalize(r, valid, 1e-6)
    assert a[0, :3].mean() == pytest.approx(0.0, abs=1e-9) and a[0, :3].std() == pytest.approx(1.0, rel=1e-5)
    assert a[0, 3] == 0.0 and (a[1] == 0).all()  # a constant group carries no signal


def test_a2po_semantic_part_only_where_signs_agree_and_never_larger():
    rng = np.random.default_rng(0)
    a_biz, a_sem = rng.normal(size=(50, 8)), 3 * rng.normal(size=(50, 8))
    a, lam = a2po_advantages(a_biz, a_sem, 1e-6)
    disagree = np.sign(a_biz) != np.sign(a_sem)
    np.testing.assert_array_equal(a[disagree], a_biz[disagree])
    assert (np.abs(lam * a_sem) <= np.abs(a_biz) + 1e-9).all()
    assert ((lam >= 0) & (lam <= 1)).all()
    same, _ = a2po_advantages(np.array([[1.0, -1.0]]), np.array([[1.0, -1.0]]), 1e-9)
    np.testing.assert_allclose(same, [[2.0, -2.0]])


def test_advantage_modes():
    cfg = PolicyConfig(judge_share=1.0)
    r_biz = np.array([[1.0, -0.5, -0.3], [-0.5, -0.3, -0.25]])
    r_sem = np.array([[0.2, 0.9, 0.1], [0.0, 0.0, 3.0]])
    valid = np.ones_like(r_biz, dtype=bool)
    judged = np.array([True, False])
    biz = advantages("business", r_biz, r_sem, judged, valid, cfg)
    np.testing.assert_allclose(biz.advantage, group_normalize(r_biz, valid, cfg.advantage_eps))
    a2 = advantages("a2po", r_biz, r_sem, judged, valid, cfg)
    np.testing.assert_allclose(a2.advantage[1], biz.advantage[1])  # not judged: the business advantage
    assert a2.judged == 1 and 0 <= a2.agree <= 1 and 0 <= a2.mean_lambda <= 1
    summed = advantages("reward_sum", r_biz, r_sem, judged, valid, cfg)
    np.testing.assert_allclose(summed.advantage[0], group_normalize(r_biz[:1] + r_sem[:1], valid[:1], 1e-6)[0])
    with pytest.raises(ValueError):
        PolicyConfig(mode="sum")


def _tiny(item_softmax="prefix", seed=0):
    vocab = SidVocab((3, 6))
    codes = np.array([[0, 0], [0, 1], [1, 2], [1, 3], [2, 4], [2, 5]])  # hybrid-like: last level names the item
    torch.manual_seed(seed)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=2, d_model=16, d_ff=32,
                                    dropout=0.0, max_positions=32, item_softmax=item_softmax)).eval()
    return vocab, codes, model


def test_candidate_logprobs_match_the_training_loss():
    """The shared-history computation equals the teacher-forced sequence's log-probability (prefix softmax)."""
    vocab, codes, model = _tiny()
    it = vocab.codes_to_tokens(codes)
    groups = torch.as_tensor(vocab.softmax_groups())
    sib = torch.as_tensor(item_siblings(it, vocab.vocab_size))
    hists = [np.array([0, 2]), np.array([5, 1, 3])]
    cands = np.array([[4, 1], [2, 0]])
    ids, mask, pos = (torch.as_tensor(a) for a in left_pad([history_tokens(h, it) for h in hists]))
    with torch.no_grad():
        lp = candidate_logprobs(model, ids, mask, pos, torch.as_tensor(it[cands]), groups, sib)
    assert lp.shape == (2, 2, 2) and (lp <= 0).all()
    for u, h in enumerate(hists):
        for g in range(2):
            seq = torch.as_tensor(history_tokens(np.append(h, cands[u, g]), it))[None]
            w = torch.zeros(1, seq.shape[1] - 1)
            w[0, -2:] = 1.0
            with torch.no_grad():
                ce = sequence_loss(model, seq[:, :-1], seq[:, 1:], w, 0.0, groups, sib)
            assert float(lp[u, g].sum()) == pytest.approx(-2 * float(ce), abs=1e-5)


def _task(codes, vocab, n=60, seed=0):
    rng = np.random.default_rng(seed)
    hists = [rng.integers(0, len(codes), size=rng.integers(1, 5)) for _ in range(n)]
    targets = np.array([(h[-1] + 1) % len(codes) for h in hists])  # the next item follows the last one
    return AlignTask(vocab, codes, build_trie(codes, vocab.level_sizes), hists, targets, max_history=5)


def _target_logprob(model, task):
    it = task.vocab.codes_to_tokens(task.codes)
    ids, mask, pos = (torch.as_tensor(a) for a in left_pad([history_tokens(h, it) for h in task.histories]))
    with torch.no_grad():
        lp = candidate_logprobs(model, ids, mask, pos, torch.as_tensor(it[task.targets])[:, None],
                                torch.as_tensor(task.vocab.softmax_groups()),
                                torch.as_tensor(item_siblings(it, task.vocab.vocab_size)))
    return float(lp.sum(-1).mean())


def test_align_policy_raises_the_business_reward_and_keeps_the_reference():
    vocab, codes, reference = _tiny()
    task = _task(codes, vocab)
    policy = copy.deepcopy(reference)
    before = _target_logprob(policy, task)
    ref_state = {k: v.clone() for k, v in reference.state_dict().items()}
    cfg = PolicyConfig(mode="business", steps=40, users_per_step=16, group_size=6, lr=3e-3, kl_beta=1e-3)
    res = align_policy(policy, reference, task, cfg, semantic=None, validate=None, stop_after=40, progress=False)
    assert res.steps == 40 and res.best_step == 40 and len(res.history) == 40
    assert _target_logprob(policy, task) > before + 0.2  # the observed next items became likelier
    assert res.history[-1]["kl"] > 0
    for k, v in reference.state_dict().items():
        assert torch.equal(v, ref_state[k])


def test_align_policy_keeps_the_sft_model_when_no_step_validates_better():
    vocab, codes, reference = _tiny()
    task = _task(codes, vocab)
    policy = copy.deepcopy(reference)
    scores = iter([0.5, 0.4, 0.3])
    judge_calls = []

    def semantic(hists, cands):
        judge_calls.append(len(hists))
        return cands.astype(float)

    cfg = PolicyConfig(mode="a2po", steps=4, users_per_step=8, group_size=4, lr=1e-2, valid_every=2,
                       judge_share=1.0)
    res = align_policy(policy, reference, task, cfg, semantic=semantic, validate=lambda m: {"ndcg@10": next(scores)},
                       progress=False)
    assert res.best_step == 0 and res.sft_metrics == {"ndcg@10": 0.5} and [v["step"] for v in res.validation] == [0, 2, 4]
    assert sum(judge_calls) == 4 * 8 and not np.isnan(res.history[0]["sign_agreement"])
    for k, v in reference.state_dict().items():
        assert torch.equal(v, policy.state_dict()[k])
    with pytest.raises(ValueError, match="judge"):
        align_policy(policy, reference, task, cfg, semantic=None, validate=lambda m: {"ndcg@10": 0.0})


def test_include_target_puts_the_observed_item_in_every_group():
    vocab, codes, reference = _tiny()
    task = _task(codes, vocab)
    policy = copy.deepcopy(reference)
    cfg = PolicyConfig(mode="business", steps=5, users_per_step=8, group_size=3, rank_penalty=0.0,
                       include_target=True)
    res = align_policy(policy, reference, task, cfg, semantic=None, validate=None, stop_after=5, progress=False)
    # a hit is worth 1 and a miss 0, so one hit per group of 3 averages 1/3; a group where the beams found the
    # item on their own is unchanged
    assert all(h["reward_business"] == pytest.approx(1 / 3) for h in res.history)
    assert all(h["group_hit_rate"] <= 1 for h in res.history)
