"""Training and full-ranking inference for SASRec (see genrec_model/baselines/sasrec.py).

Training sequences are cut into windows of at most max_len + 1 items; every
position predicts the next item with a softmax over the whole catalog. Early
stopping watches Recall@K on the leave-one-out validation examples.

This is RecBole's SASRec training (loss_type=CE, MAX_ITEM_LIST_LENGTH=50 = SASRecConfig.max_len): RecBole
feeds every prefix of a training sequence as one example with the full-softmax CE at its last position;
the loss at every position of a window gives each of those targets exactly once per epoch, with the same
context except in sequences longer than max_len + 1 (a later window's first targets see fewer items).
"""
from __future__ import annotations

import copy
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from genrec_model.baselines.config import SASRecConfig, SASRecTrainConfig
from genrec_model.baselines.sasrec import SASRec
from genrec_model.data.splits import Example
from genrec_model.evaluation.metrics import recall_ndcg_at_k
from genrec_model.model.hardware import use_bf16


def make_windows(sequences: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Cut each training sequence into windows of <= max_len + 1 items, newest window last.

    Consecutive windows overlap by one item so every item after a sequence's first is a
    target exactly once. Sequences shorter than 2 items give no window.
    """
    out: list[np.ndarray] = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        end = len(seq)
        starts = []
        while end >= 2:
            start = max(0, end - (max_len + 1))
            starts.append((start, end))
            end = start + 1
        out.extend(seq[s:e] for s, e in reversed(starts))
    return out


def pad_right(seqs: Sequence[np.ndarray], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad with -1 -> ((B, T) int64, lengths (B,)). Keeps the last max_len items of each."""
    if max_len is not None:
        seqs = [np.asarray(s)[-max_len:] for s in seqs]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.full((len(seqs), max(int(lengths.max(initial=0)), 1)), -1, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, bucket_batches: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled index batches; within each group of bucket_batches batches, similar lengths go together."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket_batches
    batches: list[np.ndarray] = []
    for c in range(0, len(order), chunk):
        part = order[c: c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[b: b + batch_size] for b in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sequence_loss(model: SASRec, windows: np.ndarray, bf16: bool = False) -> torch.Tensor:
    """Mean next-item cross-entropy over every real position of (B, T+1) right-padded windows."""
    x = torch.from_numpy(windows[:, :-1])  # (B, T)
    y = torch.from_numpy(windows[:, 1:])  # (B, T)
    mask = y >= 0
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = model(x)  # (B, T, D)
        logits = model.item_logits(h[mask])  # (M, N) only at real targets
    return F.cross_entropy(logits, y[mask])


@torch.no_grad()
def sasrec_scores(model: SASRec, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Scores over all items for the next item after each history: (U, N). Histories must be non-empty."""
    x, lengths = pad_right(histories, model.cfg.max_len)
    return model.item_logits(model.last_hidden(torch.from_numpy(x), torch.from_numpy(lengths)))


@torch.no_grad()
def sasrec_rank(
    model: SASRec,
    histories: Sequence[np.ndarray],
    k: int,
    exclude: Sequence[np.ndarray] | None = None,
    batch_size: int = 1024,
) -> np.ndarray:
    """Top-k items per user over the full catalog, best first: (U, k) int64.

    exclude: optional per-user item arrays whose scores are set to -inf (seen-item
    filtering). RecBole does not filter for sequential models, so None matches its numbers.
    """
    was_training = model.training
    model.eval()
    out = np.full((len(histories), k), -1, dtype=np.int64)  # -1 past the catalog size
    k_eff = min(k, model.cfg.n_items)
    # batches of similar length waste little compute on padding
    order = np.argsort([min(len(h), model.cfg.max_len) for h in histories], kind="stable")
    for b in range(0, len(order), batch_size):
        users = order[b: b + batch_size]
        scores = sasrec_scores(model, [histories[u] for u in users])  # (b, N)
        if exclude is not None:
            cols = [np.asarray(exclude[u], dtype=np.int64) for u in users]
            rows = np.repeat(np.arange(len(users)), [len(c) for c in cols])
            scores[torch.from_numpy(rows), torch.from_numpy(np.concatenate(cols))] = float("-inf")
        top = torch.topk(scores, k_eff, dim=1)
        out[users, :k_eff] = torch.where(torch.isinf(top.values), -1, top.indices).numpy()  # all excluded -> -1
    model.train(was_training)
    return out


def evaluate_examples(
    model: SASRec,
    examples: Sequence[Example],
    ks=(5, 10, 20),
    exclude: Sequence[np.ndarray] | None = None,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Recall@K / NDCG@K of full-catalog ranking on leave-one-out examples."""
    ranked = sasrec_rank(model, [e.history for e in examples], max(ks), exclude=exclude, batch_size=batch_size)
    return recall_ndcg_at_k(ranked, np.array([e.target for e in examples]), ks=ks)


def train_sasrec(
    train_sequences: Sequence[np.ndarray],
    valid: Sequence[Example],
    cfg: SASRecConfig,
    train_cfg: SASRecTrainConfig = SASRecTrainConfig(),
    log=None,
) -> tuple[SASRec, list[dict]]:
    """Train with AdamW and early stopping on validation Recall@eval_k; returns the best model.

    history: one dict per evaluated epoch (epoch, loss, recall@k, ndcg@k, seconds: wall since the start,
    cpu_seconds: process CPU since the start, validation included).
    """
    torch.manual_seed(train_cfg.seed)
    torch.set_num_threads(train_cfg.threads)
    rng = np.random.default_rng(train_cfg.seed)
    model = SASRec(cfg)
    bf16 = use_bf16(train_cfg.bf16, torch.device("cpu"), "sasrec")
    opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    windows = make_windows(train_sequences, cfg.max_len)
    win_lengths = np.array([len(w) for w in windows])
    key = f"recall@{train_cfg.eval_k}"
    best, best_state, since_best = -1.0, copy.deepcopy(model.state_dict()), 0
    history: list[dict] = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for epoch in range(1, train_cfg.max_epochs + 1):
        model.train()
        losses = []
        for idx in length_bucketed_batches(win_lengths, train_cfg.batch_size, train_cfg.bucket_batches, rng):
            batch, _ = pad_right([windows[i] for i in idx])
            loss = sequence_loss(model, batch, bf16)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        out_of_time = time.process_time() - cpu0 > train_cfg.time_budget_s
        if epoch % train_cfg.eval_every and not out_of_time and epoch != train_cfg.max_epochs:
            continue
        m = evaluate_examples(model, valid, ks=(train_cfg.eval_k,), batch_size=train_cfg.eval_batch_size)
        row = {"epoch": epoch, "loss": float(np.mean(losses)), **m, "seconds": time.perf_counter() - t0,
               "cpu_seconds": time.process_time() - cpu0}
        history.append(row)
        if log is not None:
            log(row)
        if m[key] > best:
            best, best_state, since_best = m[key], copy.deepcopy(model.state_dict()), 0
        else:
            since_best += train_cfg.eval_every
        if since_best >= train_cfg.patience or out_of_time:
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, history
