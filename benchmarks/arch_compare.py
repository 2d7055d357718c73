"""Decoder-only SeqModel vs TIGER-style encoder-decoder on Amazon Beauty, same CPU-time budget each.

Both models use the frozen production SIDs (`train_beauty.py --scheme hybrid --prefix-levels 1`:
one RQ-VAE level of 256 codes on MiniLM titles + an item-specific token), the same per-level softmax
loss, AdamW (weight decay 0.1 on matrices) with 200 warmup steps and a cosine decay driven by the
fraction of the CPU budget spent, bf16 autocast, grad clip 1, batch 128, torch threads 1. Training
stops when the process CPU time (time.process_time) spent on it reaches the budget; the model at
that point is evaluated (no early stopping, no validation during training).
- decoder-only: `SeqModel` (GPT-2), 2 layers, d 128, 4 heads, FF 512, dropout .1, lr 2e-3, trained on
  `rec_sequences` windows (every next-item position of a window at once).
- encoder-decoder: `EncDecModel` (T5 backbone), 4+4 layers, d 128, 6 heads x d_kv 64, FF 1024, dropout
  .1, lr 2e-3 (`--encdec-lr`), one example per target item of each training prefix (TIGER), the
  encoder reading the last 20 items. No user-id token (TIGER prepends a hashed user id).
Evaluation: the same trie-constrained beam search (`beam_search.decode`, beam 20) on a fixed sample
of users, full ranking, no seen-item filter, validation (second-to-last item) and test (last item).

Measured 2026-11-24 on the shared 2-core CPU (other jobs running), torch threads 1, 600 CPU s of
training each (the default), 3000 users (seed 7) for both splits, beam 20, 8 users per decode call;
21.5 min wall:

    nice -n 10 .venv/bin/python benchmarks/arch_compare.py --out /tmp/arch/final.json

                  params  steps  epochs  target items  decode      split   R@5    N@5    R@10   N@10
                                         per CPU-s     users/CPU-s
    decoder-only  1.99M   3556   19.15   4194          328 / 321   valid  .0607  .0438  .0840  .0514
                                                                   test   .0437  .0310  .0630  .0372
    enc-dec (T5)  6.04M   1283    1.25    274          154 / 149   valid  .0217  .0137  .0353  .0181
                                                                   test   .0100  .0064  .0190  .0094
    (decode users/CPU-s: valid / test; training loss over the last 200 steps 2.13 vs 5.95, still falling
    for the enc-dec)

Decision: keep the decoder-only model. For the same CPU seconds the encoder-decoder reads 15x fewer
target items (one encoder pass over the history per target, where the decoder-only trains every
target of a window in one causal pass), so it saw 1.25 epochs against 19 and reaches 30% of the
decoder-only's test Recall@10; it also decodes 2.2x slower (4+4 wider layers, cross-attention cache).
This compares the two at an equal CPU budget, not at convergence (TIGER trains 200k steps). The
enc-dec's large valid/test gap is that of a popularity-leaning, undertrained model: most-popular
scores R@10 .0167 valid / .0103 test on the same users.
An lr probe for the enc-dec (150 CPU s, 1000 other users) gave valid R@10 .023 with lr 2e-3 and with 5e-3.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_beauty import DATA, full_codes, load_beauty, minilm_embeddings, semantic_codes  # noqa: E402

from genrec_model.data.splits import split_sequence  # noqa: E402
from genrec_model.decode.beam_search import decode, left_pad
from genrec_model.decode.config import BeamSearchConfig  # noqa: E402
from genrec_model.decode.trie import build_trie  # noqa: E402
from genrec_model.evaluation.metrics import recall_ndcg_at_k  # noqa: E402
from genrec_model.model.config import (
    SeqDataConfig,
    SeqModelConfig,  # noqa: E402
    TrainConfig,  # noqa: E402
)
from genrec_model.model.encdec_model import EncDecConfig, EncDecModel, EncDecStepModel  # noqa: E402
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import PAD, SidVocab, history_tokens  # noqa: E402
from genrec_model.model.torch_step import TorchStepModel  # noqa: E402
from genrec_model.model.train_data import TokenSequences, collate, eval_examples, rec_sequences
from genrec_model.model.trainer import batches, make_optimizer, sequence_loss

# loss_fn(model, token arrays, weight arrays) -> (loss, target items, input tokens) of one batch
LossFn = Callable[[torch.nn.Module, list, list], tuple[torch.Tensor, int, int]]


def tiger_examples(sequences: list[np.ndarray], item_tokens: np.ndarray, max_history: int) -> TokenSequences:
    """One sequence per target item of each leave-one-out training prefix (TIGER's sliding positions):
    `history_tokens(last max_history items before it)` + the target's SID tokens, weight 1 on those."""
    L = item_tokens.shape[1]
    toks, ws = [], []
    for seq in sequences:
        prefix, _, _ = split_sequence(np.asarray(seq), max_history)
        for j in range(1, len(prefix)):
            t = np.concatenate([history_tokens(prefix[max(0, j - max_history):j], item_tokens), item_tokens[prefix[j]]])
            w = np.zeros(len(t), dtype=np.float32)
            w[-L:] = 1.0
            toks.append(t)
            ws.append(w)
    return TokenSequences(toks, ws)


def decoder_only_loss(groups: torch.Tensor, L: int) -> LossFn:
    def fn(model, tokens, weights):
        x, y, w = (torch.as_tensor(a) for a in collate(tokens, weights))
        loss = sequence_loss(model, x, y, w, 0.0, groups)
        return loss, int((w > 0).sum()) // L, int((x != PAD).sum())

    return fn


def encdec_loss(level_ranges: list[tuple[int, int]], L: int) -> LossFn:
    def fn(model, tokens, weights):
        ids, mask, _ = left_pad([t[:-L] for t in tokens])
        targets = torch.as_tensor(np.stack([t[-L:] for t in tokens]))  # (B, L)
        loss = model.level_loss(torch.as_tensor(ids), torch.as_tensor(mask), targets, level_ranges)
        return loss, len(tokens), int(mask.sum()) + targets.numel()

    return fn


def lr_at_cpu(step: int, cpu_frac: float, cfg: TrainConfig) -> float:
    """Linear warmup over `cfg.warmup_steps` steps, times a cosine over the fraction of the CPU budget spent."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps)
    shape = 0.5 * (1 + math.cos(math.pi * min(1.0, cpu_frac)))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape)


def train_for_cpu(model: torch.nn.Module, data: TokenSequences, loss_fn: LossFn, cfg: TrainConfig,
                  budget_s: float, targets_per_epoch: int) -> dict:
    """Train until this process has spent `budget_s` CPU seconds in the loop; returns throughput stats."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = make_optimizer(model, cfg)
    model.train()
    c0, w0 = time.process_time(), time.time()
    step, n_targets, n_tokens, losses, done = 0, 0, 0, [], False
    while not done:
        for idx in batches(data, cfg.batch_size, cfg.bucket_batches, rng):
            frac = (time.process_time() - c0) / budget_s
            if frac >= 1.0:
                done = True
                break
            for g in opt.param_groups:
                g["lr"] = lr_at_cpu(step, frac, cfg)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, nt, nk = loss_fn(model, [data.tokens[i] for i in idx], [data.weights[i] for i in idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step, n_targets, n_tokens = step + 1, n_targets + nt, n_tokens + nk
            losses.append(float(loss.detach()))
            if cfg.progress and step % 200 == 0:
                print(f"  step {step} epoch {n_targets / targets_per_epoch:.2f} loss {np.mean(losses[-200:]):.3f} "
                      f"cpu {time.process_time() - c0:.0f}s", flush=True)
    cpu = time.process_time() - c0
    model.eval()
    return {"cpu_s": round(cpu, 1), "wall_s": round(time.time() - w0, 1), "steps": step,
            "epochs": round(n_targets / targets_per_epoch, 3), "targets_per_cpu_s": round(n_targets / cpu, 1),
            "tokens_per_cpu_s": round(n_tokens / cpu, 1), "loss_last200": round(float(np.mean(losses[-200:])), 4)}


def evaluate(step_model, vocab: SidVocab, trie, item_tokens: np.ndarray, histories: list[np.ndarray],
             targets: np.ndarray, beam: int, users_per_call: int) -> dict:
    starts = tuple(vocab.level_range(lv)[0] for lv in range(vocab.n_levels))
    cfg = BeamSearchConfig(beam_width=beam, top_k=10, users_per_call=users_per_call)
    toks = [history_tokens(h, item_tokens) for h in histories]
    decode(step_model, trie, starts, toks[:users_per_call], cfg)  # warm-up (Numba, allocator), not timed
    c0, w0 = time.process_time(), time.time()
    ranked, _ = decode(step_model, trie, starts, toks, cfg)
    cpu, wall = time.process_time() - c0, time.time() - w0
    m = {k: round(v, 4) for k, v in recall_ndcg_at_k(ranked, targets, ks=(5, 10)).items()}
    return {**m, "decode_users_per_cpu_s": round(len(toks) / cpu, 1),
            "decode_users_per_wall_s": round(len(toks) / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--budget-cpu-s", type=float, default=600.0, help="training CPU seconds per architecture")
    ap.add_argument("--eval-users", type=int, default=3000)
    ap.add_argument("--eval-seed", type=int, default=7)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--users-per-call", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3, help="decoder-only")
    ap.add_argument("--encdec-lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--arch", default="both", choices=["both", "decoder_only", "encdec"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="also write the summary JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    t0 = time.time()

    asins, titles, seqs = load_beauty(args.data_dir)
    emb = minilm_embeddings(titles, "/tmp/model/beauty_minilm.npy")
    sem = semantic_codes(emb, "rqvae", 3, 256, 0, "/tmp/model")
    codes, level_sizes = full_codes(sem, asins, 256, "hybrid", 1)
    vocab = SidVocab(tuple(level_sizes))
    item_tokens = vocab.codes_to_tokens(codes)  # (N, L)
    L = vocab.n_levels
    trie = build_trie(codes, level_sizes)
    level_ranges = [vocab.level_range(lv) for lv in range(L)]
    dcfg = SeqDataConfig(max_history=20)

    vh, vt, vrows = eval_examples(seqs, dcfg.max_history, "valid")
    th, tt, trows = eval_examples(seqs, dcfg.max_history, "test")
    users = np.intersect1d(vrows, trows)
    users = np.random.default_rng(args.eval_seed).choice(users, size=min(args.eval_users, len(users)), replace=False)
    vpos, tpos = {u: i for i, u in enumerate(vrows)}, {u: i for i, u in enumerate(trows)}
    splits = {"valid": ([vh[vpos[u]] for u in users], vt[[vpos[u] for u in users]]),
              "test": ([th[tpos[u]] for u in users], tt[[tpos[u] for u in users]])}
    print(f"items {len(asins)} users {len(seqs)} levels {level_sizes} vocab {vocab.vocab_size} "
          f"eval users {len(users)} prep {time.time() - t0:.0f}s", flush=True)

    base = TrainConfig(lr=args.lr, weight_decay=0.1, warmup_steps=args.warmup, batch_size=args.batch_size, bf16=True,
                       seed=args.seed, threads=1, progress=True)
    archs = ["decoder_only", "encdec"] if args.arch == "both" else [args.arch]
    results = {}
    for arch in archs:
        torch.manual_seed(args.seed)
        if arch == "decoder_only":
            data = rec_sequences(seqs, item_tokens, dcfg)
            max_pos = 1 + (dcfg.max_history + 1) * L + dcfg.max_words + 2
            model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=2, n_head=4, d_model=128, d_ff=512,
                                            dropout=0.1, max_positions=max_pos))
            loss_fn, cfg = decoder_only_loss(torch.as_tensor(vocab.softmax_groups()), L), base
            make_step = TorchStepModel
        else:
            data = tiger_examples(seqs, item_tokens, dcfg.max_history)
            model = EncDecModel(EncDecConfig(vocab_size=vocab.vocab_size))
            loss_fn = encdec_loss(level_ranges, L)
            cfg = replace(base, lr=args.encdec_lr)
            make_step = EncDecStepModel
        targets_per_epoch = int(sum(int((w > 0).sum()) for w in data.weights)) // L
        print(f"[{arch}] params {model.num_params() / 1e6:.2f}M sequences {len(data)} "
              f"targets/epoch {targets_per_epoch} lr {cfg.lr}", flush=True)
        res = {"params": model.num_params(), "train_sequences": len(data), "lr": cfg.lr}
        res["train"] = train_for_cpu(model, data, loss_fn, cfg, args.budget_cpu_s, targets_per_epoch)
        print(f"[{arch}] train {json.dumps(res['train'])}", flush=True)
        for split, (hist, targ) in splits.items():
            res[split] = evaluate(make_step(model), vocab, trie, item_tokens, hist, targ, args.beam,
                                  args.users_per_call)
            print(f"[{arch}] {split} {json.dumps(res[split])}", flush=True)
        results[arch] = res
        del model, data

    print(f"\n{'arch':<13} {'split':<6} {'R@5':>7} {'N@5':>7} {'R@10':>7} {'N@10':>7} {'dec u/cpu-s':>11} "
          f"{'train cpu-s':>11} {'epochs':>7} {'targ/cpu-s':>10} {'tok/cpu-s':>10} {'params':>8}")
    for arch, r in results.items():
        tr = r["train"]
        for split in ("valid", "test"):
            m = r[split]
            print(f"{arch:<13} {split:<6} {m['recall@5']:>7.4f} {m['ndcg@5']:>7.4f} {m['recall@10']:>7.4f} "
                  f"{m['ndcg@10']:>7.4f} {m['decode_users_per_cpu_s']:>11.1f} {tr['cpu_s']:>11.0f} "
                  f"{tr['epochs']:>7.2f} {tr['targets_per_cpu_s']:>10.0f} {tr['tokens_per_cpu_s']:>10.0f} "
                  f"{r['params'] / 1e6:>7.2f}M")
    summary = {"args": vars(args), "level_sizes": level_sizes, "eval_users": len(users), "results": results,
               "total_wall_min": round((time.time() - t0) / 60, 1)}
    print(json.dumps(summary), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    fields = []
    for arch, r in results.items():
        for split in ("valid", "test"):
            fields += [f"{arch}_{split}_r5={r[split]['recall@5']}", f"{arch}_{split}_n5={r[split]['ndcg@5']}",
                       f"{arch}_{split}_r10={r[split]['recall@10']}", f"{arch}_{split}_n10={r[split]['ndcg@10']}"]
        fields += [f"{arch}_cpu_s={r['train']['cpu_s']}", f"{arch}_epochs={r['train']['epochs']}",
                   f"{arch}_targets_per_cpu_s={r['train']['targets_per_cpu_s']}",
                   f"{arch}_decode_users_per_cpu_s={r['test']['decode_users_per_cpu_s']}"]
    print(" ".join(fields), flush=True)


if __name__ == "__main__":
    main()
