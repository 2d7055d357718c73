"""Post-training of the generator with Asymmetric Advantage Policy Optimization (S-GRec's A2PO).

Per step, for a batch of (history, observed next item) pairs from users' training prefixes:
1. group: the policy's own trie-constrained beam search gives `group_size` candidate items per user;
2. business reward (the platform's objective; here the observed next item): the hit's value (1, or the item's
   value column) for the true item, -rank_penalty / log2(rank + 2) for a wrong candidate at beam rank `rank`,
   so confident wrong beams cost most;
3. semantic reward: the personalized judge's score of each candidate, on a `judge_share` of the groups;
4. advantages normalized within each group; A2PO keeps the business advantage and adds the semantic one only
   where both agree in sign, scaled by min/max of their magnitudes, so it never outweighs the business part;
5. loss: -A * log pi(candidate) (the candidates' SID log-probability under the model's training normalization)
   + kl_beta * KL(pi || SFT model) on the same tokens (k3 estimator); one optimizer step per group (on-policy,
   so no ratio clipping is needed).
Validation (Recall/NDCG@10 of the same beam search as training-time model selection) every `valid_every`
steps picks the step that is kept; step 0 is the SFT model itself, so alignment never ships a worse model
on validation.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from genrec_model.align.config import PolicyConfig
from genrec_model.decode.beam_search import decode, left_pad
from genrec_model.decode.config import BeamSearchConfig, trained_normalization
from genrec_model.decode.trie import SidTrie
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab, history_tokens
from genrec_model.model.torch_step import TorchStepModel
from genrec_model.model.trainer import item_siblings, target_logprobs


def business_reward(cands: np.ndarray, targets: np.ndarray, rank_penalty: float,
                    value: np.ndarray | None = None) -> np.ndarray:
    """(B, G) reward of candidates (B, G) (item indices, beam order, -1 = none) for the observed next items
    (B,): the hit's value (1 without a value column) for the true item, -rank_penalty / log2(rank + 2) for
    a wrong one at its beam rank; 0 for empty slots."""
    cands = np.asarray(cands)
    gain = np.ones(len(targets)) if value is None else np.asarray(value, dtype=np.float64)[targets]
    wrong = -rank_penalty / np.log2(np.arange(cands.shape[1]) + 2.0)
    r = np.where(cands == np.asarray(targets)[:, None], gain[:, None], wrong[None, :])
    return np.where(cands >= 0, r, 0.0)


def group_normalize(r: np.ndarray, valid: np.ndarray, eps: float) -> np.ndarray:
    """(r - group mean) / (group std + eps) over each row's valid entries; 0 elsewhere and in constant groups."""
    n = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    mean = np.where(valid, r, 0.0).sum(axis=1, keepdims=True) / n
    std = np.sqrt(np.where(valid, (r - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / n)
    a = np.where(std > eps, (r - mean) / (std + eps), 0.0)
    return np.where(valid, a, 0.0)


def a2po_advantages(a_biz: np.ndarray, a_sem: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """A = A_biz + lambda * A_sem, lambda = 1[sign(A_biz) = sign(A_sem)] * min(|A_biz|, |A_sem|) /
    (max(|A_biz|, |A_sem|) + eps): the semantic part only where it agrees with the business one, never larger."""
    big = np.maximum(np.abs(a_biz), np.abs(a_sem))
    lam = (np.sign(a_biz) == np.sign(a_sem)) * np.minimum(np.abs(a_biz), np.abs(a_sem)) / (big + eps)
    return a_biz + lam * a_sem, lam


@dataclass
class GroupAdvantages:
    advantage: np.ndarray      # (B, G)
    agree: float               # share of judged candidates with a business advantage whose semantic one agrees in sign
    mean_lambda: float         # over judged candidates (a2po)
    judged: int                # groups the judge scored


def advantages(mode: str, r_biz: np.ndarray, r_sem: np.ndarray | None, judged: np.ndarray, valid: np.ndarray,
               cfg: PolicyConfig) -> GroupAdvantages:
    """Advantages of one step's groups. r_sem (B, G) is read on the `judged` rows (B,) only."""
    a_biz = group_normalize(r_biz, valid, cfg.advantage_eps)
    if mode == "business" or r_sem is None or not judged.any():
        return GroupAdvantages(a_biz, float("nan"), float("nan"), 0)
    j = judged
    a_sem = group_normalize(np.where(valid[j], r_sem[j], 0.0), valid[j], cfg.advantage_eps)
    v = valid[j]
    signal = v & (a_biz[j] != 0)  # candidates the business reward says something about
    agree = float((np.sign(a_biz[j]) == np.sign(a_sem))[signal].mean()) if signal.any() else float("nan")
    out = a_biz.copy()
    lam = np.zeros_like(a_sem)
    if mode == "a2po":
        out[j], lam = a2po_advantages(a_biz[j], a_sem, cfg.advantage_eps)
    elif mode == "reward_sum":
        out[j] = group_normalize(r_biz[j] + cfg.semantic_weight * np.where(v, r_sem[j], 0.0), v, cfg.advantage_eps)
    else:
        raise ValueError(f"unknown alignment mode {mode!r}")
    return GroupAdvantages(out, agree, float(lam[v].mean()) if mode == "a2po" else float("nan"), int(j.sum()))


def candidate_logprobs(model: SeqModel, hist_ids: torch.Tensor, hist_mask: torch.Tensor, hist_pos: torch.Tensor,
                       cand_tokens: torch.Tensor, groups: torch.Tensor, siblings: torch.Tensor | None) -> torch.Tensor:
    """(B, G, L) log-probability of each SID token of candidates (B, G, L) (token ids) after left-padded
    histories (B, T) (`left_pad`): the history is encoded once per user, its KV cache shared by the G
    candidates. Same normalization as training (`target_logprobs`)."""
    B, G, L = cand_tokens.shape
    table = model.token_table()
    h, k, v = model.hidden(hist_ids, attention_mask=hist_mask, position_ids=hist_pos, table=table)
    states = [h[:, -1].repeat_interleave(G, dim=0).unsqueeze(1)]  # (B*G, 1, D): predicts level 0
    if L > 1:
        inp = cand_tokens[:, :, :-1].reshape(B * G, L - 1)
        mask = torch.cat([hist_mask.repeat_interleave(G, dim=0), torch.ones_like(inp)], dim=1)
        pos = hist_pos[:, -1:].repeat_interleave(G, dim=0) + 1 + torch.arange(L - 1, device=inp.device)
        h2, _, _ = model.hidden(inp, attention_mask=mask, position_ids=pos, past_k=k.repeat_interleave(G, dim=1),
                                past_v=v.repeat_interleave(G, dim=1), table=table)
        states.append(h2)
    hs = torch.cat(states, dim=1)  # (B*G, L, D): hs[:, l] predicts candidate token l
    if model.item_shift is not None:  # the item level from the user state (+ a read of the history's states)
        y = cand_tokens.reshape(B * G, L)
        T = hist_ids.shape[1]
        full = torch.cat([h.repeat_interleave(G, dim=0)[:, :-1], hs], dim=1)  # (B*G, T-1+L, D)
        x = torch.cat([hist_ids.repeat_interleave(G, dim=0), y[:, :-1]], dim=1)
        yy = torch.cat([torch.zeros_like(x[:, :T - 1]), y], dim=1)
        keys = torch.cat([hist_mask.repeat_interleave(G, dim=0), torch.ones_like(y[:, :-1])], dim=1)
        hs = model.item_states(full, x, yy, table, keys)[:, T - 1:]
    hs = hs.reshape(B * G * L, -1)
    return target_logprobs(model, hs, cand_tokens.reshape(-1), groups, siblings, table).reshape(B, G, L)


@dataclass
class AlignResult:
    best_step: int = 0
    best_metrics: dict = field(default_factory=dict)
    sft_metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)     # one row per logged step
    validation: list[dict] = field(default_factory=list)  # one row per validation pass
    seconds: float = 0.0
    steps: int = 0


@dataclass(frozen=True)
class AlignTask:
    """What alignment needs of the catalog and the users: item SIDs as tokens, the trie, training pairs."""
    vocab: SidVocab
    codes: np.ndarray            # (N, L) SID codes per item index
    trie: SidTrie
    histories: list[np.ndarray]  # item-index histories (oldest first) of the training pairs
    targets: np.ndarray          # (P,) the observed next item of each
    max_history: int
    value: np.ndarray | None = None  # (N,) item value for the business reward, None = hits count 1


def align_policy(policy: SeqModel, reference: SeqModel, task: AlignTask, cfg: PolicyConfig,
                 semantic: Callable[[list[np.ndarray], np.ndarray], np.ndarray] | None,
                 validate: Callable[[SeqModel], dict] | None, stop_after: int | None = None,
                 progress: bool = True) -> AlignResult:
    """Align `policy` in place (it starts as a copy of `reference`, the frozen SFT model); on return it holds
    the weights of the best validated step (or, with validate=None, of step `stop_after`).
    semantic(histories, candidates (B, G)) -> (B, G) judge scores; None in business mode."""
    if validate is None and not stop_after:
        raise ValueError("alignment without validation needs stop_after (the step chosen on validation)")
    if cfg.mode != "business" and cfg.uses_judge and semantic is None:
        raise ValueError(f"align.policy.mode={cfg.mode} needs the semantic judge")
    if len(task.targets) == 0:
        raise ValueError("no training pairs to align on")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    vocab = task.vocab
    item_tokens = vocab.codes_to_tokens(task.codes)
    groups = torch.as_tensor(vocab.softmax_groups(), dtype=torch.long)
    siblings = (torch.as_tensor(item_siblings(item_tokens, vocab.vocab_size))
                if policy.cfg.item_softmax == "prefix" else None)
    beam = BeamSearchConfig(beam_width=cfg.group_size, top_k=cfg.group_size, users_per_call=cfg.users_per_step,
                            normalize=trained_normalization(policy.cfg.item_softmax))
    policy.eval()  # dropout off: the group and its log-probabilities come from the same deterministic policy
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    result = AlignResult()
    t0 = time.time()
    best_state = None
    last = stop_after if validate is None else cfg.steps
    if validate is not None:
        result.sft_metrics = validate(policy)
        result.best_metrics = dict(result.sft_metrics)
        result.validation.append({"step": 0, **result.sft_metrics})
    n = len(task.targets)
    for step in range(1, last + 1):
        pick = rng.choice(n, size=min(cfg.users_per_step, n), replace=False)
        hists = [np.asarray(task.histories[i])[-task.max_history:] for i in pick]
        targets = task.targets[pick]
        toks = [history_tokens(h, item_tokens) for h in hists]
        with torch.no_grad():
            cands, _ = decode(TorchStepModel(policy), task.trie, vocab.level_starts, toks, beam)
        hit = (cands == targets[:, None]).any(axis=1)  # the policy's own beams found the observed item
        if cfg.include_target:
            cands[~hit, -1] = targets[~hit]
        valid = cands >= 0
        r_biz = business_reward(cands, targets, cfg.rank_penalty, task.value)
        judged = np.zeros(len(pick), dtype=bool)
        r_sem = None
        if cfg.uses_judge and cfg.mode != "business":
            judged = rng.random(len(pick)) < cfg.judge_share
            if judged.any():
                r_sem = np.zeros(cands.shape)
                rows = np.flatnonzero(judged)
                r_sem[rows] = semantic([hists[i] for i in rows], np.where(valid[rows], cands[rows], 0))
        adv = advantages(cfg.mode, r_biz, r_sem, judged, valid, cfg)
        ids, mask, pos = (torch.as_tensor(a) for a in left_pad(toks))
        cand_tok = torch.as_tensor(item_tokens[np.where(valid, cands, 0)])  # (B, G, L)
        lp = candidate_logprobs(policy, ids, mask, pos, cand_tok, groups, siblings)
        with torch.no_grad():
            ref_lp = candidate_logprobs(reference, ids, mask, pos, cand_tok, groups, siblings)
        w = torch.as_tensor(valid, dtype=lp.dtype)
        d = ref_lp - lp
        kl = ((torch.exp(d) - d - 1).sum(-1) * w).sum() / w.sum()
        pg = -(torch.as_tensor(adv.advantage, dtype=lp.dtype) * lp.sum(-1) * w).sum() / w.sum()
        loss = pg + cfg.kl_beta * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        policy.weights_changed()
        row = {"step": step, "loss": float(loss.detach()), "kl": float(kl.detach()),
               "reward_business": float(r_biz[valid].mean()), "group_hit_rate": float(hit.mean()),
               "reward_semantic": float(r_sem[judged][valid[judged]].mean()) if adv.judged else float("nan"),
               "sign_agreement": adv.agree, "mean_lambda": adv.mean_lambda, "judged_groups": adv.judged,
               "seconds": time.time() - t0}
        result.history.append(row)
        result.steps = step
        if validate is not None and (step % cfg.valid_every == 0 or step == last):
            metrics = validate(policy)
            result.validation.append({"step": step, **metrics, "seconds": time.time() - t0})
            if progress:
                print(json.dumps({"align_step": step, **{k: round(v, 5) for k, v in metrics.items()},
                                  "kl": round(row["kl"], 5), "hit": round(float(np.mean(
                                      [h["group_hit_rate"] for h in result.history[-cfg.valid_every:]])), 4)}),
                      flush=True)
            if metrics[cfg.monitor] > result.best_metrics[cfg.monitor]:
                result.best_step, result.best_metrics = step, dict(metrics)
                best_state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    if validate is not None:
        if best_state is None:
            policy.load_state_dict(reference.state_dict())
        else:
            policy.load_state_dict(best_state)
    else:
        result.best_step = last
    result.seconds = time.time() - t0
    return result

