"""Training loop for SeqModel: AdamW, warmup + cosine/linear decay, per-epoch validation, early stop.

The loop knows nothing about SIDs or beam search: it takes an `epoch_data(epoch)` callable returning
the token sequences of one epoch and a `validate(model)` callable returning metrics (e.g. Recall@10
from constrained beam search, or the teacher-forced NLL of `teacher_forced_metrics`).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genrec_model.model.config import TrainConfig
from genrec_model.model.distributed import SINGLE, Ranks
from genrec_model.model.hardware import pick_device, use_bf16
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.train_data import TokenSequences, collate


@dataclass
class TrainResult:
    best_metrics: dict = field(default_factory=dict)
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)
    minutes: float = 0.0
    precision: str = "fp32"  # what autocast really ran (bf16 only where native)
    stopped: str = ""
    tokens: int = 0  # input tokens trained on (all epochs, all processes)
    samples: int = 0  # training sequences (all epochs, all processes)
    train_seconds: float = 0.0  # optimisation steps only (no validation)
    processes: int = 1  # data-parallel processes (distributed.Ranks.world)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "none":
        return cfg.lr
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if cfg.decay == "cosine" else 1.0 - frac
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape)


def make_optimizer(model: SeqModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices only (not on biases, LayerNorm, position embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "wpe" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def batches(data: TokenSequences, batch_size: int, bucket: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled index batches; within chunks of `bucket` batches, sequences are sorted by length."""
    order = rng.permutation(len(data))
    lengths = np.fromiter((len(t) for t in data.tokens), dtype=np.int64, count=len(data))
    out = []
    chunk = batch_size * max(1, bucket)
    for s in range(0, len(order), chunk):
        part = order[s:s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(out)
    return out


def item_siblings(item_tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """(V,) prefix id per token for `sequence_loss`: items (rows of `item_tokens` (N, L), the last column
    naming the item) with equal first L-1 tokens share a prefix id; -1 for every other token."""
    item_tokens = np.asarray(item_tokens, dtype=np.int64)
    last = item_tokens[:, -1]
    if len(np.unique(last)) != len(last):
        raise ValueError("item_softmax='prefix' needs an item-specific last SID level (sids.scheme: hybrid); "
                         "here items share last-level tokens")
    _, prefix_id = np.unique(item_tokens[:, :-1], axis=0, return_inverse=True)
    out = np.full(vocab_size, -1, dtype=np.int64)
    out[last] = prefix_id.reshape(-1)
    return out


def sequence_loss(
    model: SeqModel,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    label_smoothing: float,
    groups: torch.Tensor | None = None,
    siblings: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted next-token cross entropy; the LM head runs only on positions with weight > 0.

    groups: sorted token-id boundaries (e.g. `SidVocab.softmax_groups()`); when given, each target is
    scored by a softmax over its own group only (its SID level, or the word range), which is what the
    level-normalized beam search uses and makes the head far cheaper than a full-vocabulary softmax.
    siblings: (V,) prefix id of every item-level token (-1 for every other token and for item tokens that
    name no item): an item target is then scored by a softmax over the items sharing its prefix only
    (item_softmax="prefix", `item_siblings`).
    """
    table = model.token_table()  # once per step: a content model computes its item rows here
    h, _, _ = model.hidden(x, table=table)  # (B, T, D), plain causal attention (right padding never seen)
    h = model.item_states(h, x, y, table)
    sel = w > 0
    hs, ys, ws = h[sel], y[sel], w[sel]  # (M, D), (M,), (M,)
    if groups is None:
        ce = F.cross_entropy(model.logits(hs), ys, reduction="none", label_smoothing=label_smoothing)
        return (ce * ws).sum() / ws.sum()
    total = hs.new_zeros(())
    for rows, logits, target in group_logits(model, hs, ys, groups, siblings, table):
        ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
        total = total + (ce * ws[rows]).sum()
    return total / ws.sum()


def group_logits(model: SeqModel, hs: torch.Tensor, ys: torch.Tensor, groups: torch.Tensor,
                 siblings: torch.Tensor | None = None, table: torch.Tensor | None = None):
    """Per softmax group present in the targets ys (M,): (rows (M,) bool, logits (M_g, group size) of hidden
    states hs[rows] (M, D) over that group, targets within the group). Logits outside a target's prefix
    group are -inf-like on the item level when `siblings` is given (see `sequence_loss`)."""
    gid = torch.bucketize(ys, groups, right=True) - 1
    if model.lm_head is not None:
        weight = model.lm_head.weight
    else:
        weight = model.token_table() if table is None else table  # (V, D)
    bias = model.output_bias()  # (V,) or None
    for g in torch.unique(gid).tolist():
        rows = gid == g
        lo, hi = int(groups[g]), int(groups[g + 1])
        logits = hs[rows] @ weight[lo:hi].T  # (M_g, hi - lo)
        if bias is not None:
            logits = logits + bias[lo:hi]
        sib = None if siblings is None else siblings[lo:hi]
        if sib is not None and bool((sib >= 0).any()):  # the item level: normalize within the prefix
            same = sib.unsqueeze(0) == siblings[ys[rows]].unsqueeze(1)  # (M_g, hi - lo)
            logits = logits.masked_fill(~same, torch.finfo(logits.dtype).min)
        yield rows, logits, ys[rows] - lo


def target_logprobs(model: SeqModel, hs: torch.Tensor, ys: torch.Tensor, groups: torch.Tensor,
                    siblings: torch.Tensor | None = None, table: torch.Tensor | None = None) -> torch.Tensor:
    """(M,) log-probability of each target ys (M,) from hidden states hs (M, D), under the training
    normalization of `sequence_loss` (its cross entropy without label smoothing is the negative of this)."""
    out = hs.new_zeros(ys.shape, dtype=torch.float32)
    for rows, logits, target in group_logits(model, hs, ys, groups, siblings, table):
        out[rows] = torch.log_softmax(logits.float(), dim=-1).gather(1, target.unsqueeze(1)).squeeze(1)
    return out


class _Loss(torch.nn.Module):
    """`sequence_loss` as a module's forward: what DistributedDataParallel wraps (its gradient hooks
    fire for parameters used in forward)."""

    def __init__(self, model: SeqModel, label_smoothing: float, groups, siblings) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing, self.groups, self.siblings = label_smoothing, groups, siblings

    def forward(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return sequence_loss(self.model, x, y, w, self.label_smoothing, self.groups, self.siblings)


def _save_curves(history: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history[0] if k not in ("epoch", "minutes")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot([h["epoch"] for h in history], [h[k] for h in history], marker="o")
        ax.set_title(k)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def train(
    model: SeqModel,
    epoch_data: Callable[[int], TokenSequences],
    validate: Callable[[SeqModel], dict] | None,
    cfg: TrainConfig,
    out_dir: str | None = None,
    softmax_groups: tuple[int, ...] | None = None,
    stop_after: int | None = None,
    siblings: np.ndarray | None = None,
    ranks: Ranks = SINGLE,
) -> TrainResult:
    """Train in place; on return `model` holds the best (by `cfg.monitor`) weights.

    validate=None with stop_after=N: a refit with the epoch count chosen earlier on validation; it runs
    N epochs of the same learning-rate schedule (planned over cfg.epochs) and keeps the last weights.

    ranks: data-parallel training (distributed.py): each process passes its own share in `epoch_data` and
    trains on cfg.batch_size / world sequences per step with gradients averaged (DDP), so the global batch
    and the schedule stay those of one process; steps per epoch are the fewest any rank has; `validate`
    must return metrics already reduced over ranks (fit.validator does); only rank 0 writes files."""
    if validate is None and not stop_after:
        raise ValueError("training without validation needs stop_after (the epochs chosen on validation)")
    if cfg.batch_size % ranks.world:
        raise ValueError(f"train.trainer.batch_size={cfg.batch_size} must be a multiple of the {ranks.world} "
                         "training processes (the global batch is split evenly)")
    batch_size = cfg.batch_size // ranks.world
    torch.manual_seed(cfg.seed + ranks.rank)  # dropout differs per rank; the weights come from the caller
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed + ranks.rank)
    device = pick_device(cfg.device)
    bf16 = use_bf16(cfg.bf16, device, "train")
    model.to(device)
    opt = make_optimizer(model, cfg)
    t0 = time.time()
    result = TrainResult(precision="bf16" if bf16 else "fp32", processes=ranks.world)
    best_state, best_val, bad = None, None, 0
    data = epoch_data(0)
    steps_per_epoch = ranks.min_int(math.ceil(len(data) / batch_size))
    if steps_per_epoch == 0:
        raise ValueError(f"rank {ranks.rank} of {ranks.world} has no training sequences")
    total = steps_per_epoch * cfg.epochs
    groups = None
    if cfg.group_softmax and softmax_groups is not None:
        groups = torch.as_tensor(softmax_groups, dtype=torch.long, device=device)
    if siblings is not None:
        if groups is None:
            raise ValueError("a prefix-normalized item level (siblings) needs the per-level softmax groups")
        siblings = torch.as_tensor(siblings, dtype=torch.long, device=device)
    loss_fn = _Loss(model, cfg.label_smoothing, groups, siblings)
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: model variants (content encoders, untied heads) may leave a parameter out
        # of a step's graph; the extra graph traversal is small next to the step
        loss_fn = DistributedDataParallel(loss_fn, device_ids=[device] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
    step = 0
    for epoch in range(cfg.epochs):
        if epoch > 0:
            data = epoch_data(epoch)
        loss_fn.train()
        batch_list = batches(data, batch_size, cfg.bucket_batches, rng)
        batch_list = batch_list[:ranks.min_int(len(batch_list))]  # every rank takes the same number of steps
        it = batch_list
        if cfg.progress and ranks.is_main:
            from tqdm import tqdm

            it = tqdm(batch_list, desc=f"epoch {epoch}", leave=False, mininterval=2.0)
        loss_sum, n_tok, n_seq, te = 0.0, 0, 0, time.time()
        timed_out = False
        for idx in it:
            x, y, w = (torch.as_tensor(a, device=device) for a in collate([data.tokens[i] for i in idx],
                                                                          [data.weights[i] for i in idx]))
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(x, y, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * x.shape[0]
            n_seq += x.shape[0]
            n_tok += int((x != 0).sum())
            if cfg.progress and ranks.is_main:
                it.set_postfix(loss=f"{float(loss.detach()):.3f}", tok_s=f"{n_tok / (time.time() - te):.0f}")
            # ranks stop together: distributed runs check the time cap at the epoch's end only
            if not ranks.distributed and (time.time() - t0) / 60 > cfg.max_minutes:
                timed_out = True
                break
        result.train_seconds += time.time() - te
        loss_sum, n_seq, n_tok = ranks.sum([loss_sum, n_seq, n_tok])
        result.tokens += int(n_tok)
        result.samples += int(n_seq)
        if ranks.distributed:
            timed_out = ranks.any((time.time() - t0) / 60 > cfg.max_minutes)
        metrics = validate(model) if validate is not None else {}
        row = {"epoch": epoch, "train_loss": loss_sum / max(1, n_seq), **metrics,
               "minutes": (time.time() - t0) / 60}
        result.history.append(row)
        if cfg.progress and ranks.is_main:
            print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        if validate is None:
            result.best_epoch = epoch
            if epoch + 1 >= stop_after or timed_out:
                result.stopped = "refit epochs" if not timed_out else "time budget"
                break
            continue
        val = metrics[cfg.monitor]
        better = best_val is None or (val > best_val if cfg.monitor_mode == "max" else val < best_val)
        if better:
            best_val, bad = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            result.best_metrics, result.best_epoch = dict(metrics), epoch
            if out_dir and ranks.is_main:
                os.makedirs(out_dir, exist_ok=True)
                torch.save({"model_config": model.cfg.to_dict(), "state_dict": best_state,
                            "train_config": asdict(cfg), "epoch": epoch, "metrics": metrics},
                           os.path.join(out_dir, "best.pt"))
        else:
            bad += 1
        if timed_out or (time.time() - t0) / 60 > cfg.max_minutes:
            result.stopped = "time budget"
            break
        if bad >= cfg.patience:
            result.stopped = "early stop"
            break
    result.stopped = result.stopped or "epochs"
    result.minutes = (time.time() - t0) / 60
    if best_state is not None:
        model.load_state_dict(best_state)
    if out_dir and result.history and ranks.is_main:
        _save_curves(result.history, os.path.join(out_dir, "curves.png"))
        with open(os.path.join(out_dir, "history.json"), "w") as f:
            json.dump(result.history, f, indent=1)
    return result
