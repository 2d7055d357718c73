"""Where a training step's time goes for a content model: the per-step item table (every catalog item's
embedding, forward and backward) against the whole step, at several per-process batch sizes and catalogs.

    python benchmarks/train_step_profile.py --items 12101 --batches 128 64 --threads 1

A step's fixed cost (the item table) does not shrink when data-parallel ranks split the global batch, so it
bounds what more processes buy (docs/SCALING.md). Synthetic data of the Beauty model's shape: 2 SID levels
(256 prefixes, one token per item), histories of 9 items, the shipped Beauty model config (conf/beauty.yaml).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(items: int, conf: str, seed: int = 0):
    from genrec_model.config import load_config
    from genrec_model.model.fit import make_vocab
    from genrec_model.model.item_content import item_level, set_catalog
    from genrec_model.model.seq_model import SeqModel
    from genrec_model.model.trainer import item_siblings

    cfg = load_config(conf, []).train
    rng = np.random.default_rng(seed)
    level_sizes = [256, items]
    codes = np.stack([rng.integers(0, 256, items), np.arange(items)], 1)
    vocab, _ = make_vocab(level_sizes, [""] * items, replace(cfg.data, t2s_ratio=0.0, s2t_ratio=0.0))
    content = rng.normal(size=(items, 384)).astype(np.float32)
    model_cfg = replace(cfg.model, vocab_size=vocab.vocab_size, max_positions=64, item_content_dim=384,
                        item_tokens=item_level(vocab))
    model = SeqModel(model_cfg)
    if cfg.model.item_codebooks:  # centroids of the right shape; their values do not change the cost
        width = 384 // cfg.model.item_codebooks
        model.set_quantizer(torch.from_numpy(rng.normal(size=(cfg.model.item_codebooks, cfg.model.item_codebook_size,
                                                              width)).astype(np.float32)))
    set_catalog(model, vocab, codes, content)
    siblings = item_siblings(vocab.codes_to_tokens(codes), vocab.vocab_size) if cfg.model.item_softmax == "prefix" else None
    return model, vocab, codes, siblings


def time_it(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    from genrec_model.model.train_data import collate, history_tokens
    from genrec_model.model.trainer import sequence_loss

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", default="conf/beauty.yaml")
    ap.add_argument("--items", type=int, nargs="+", default=[12101])
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'items':>8}{'batch':>7}{'table ms':>10}{'step ms':>10}{'table share':>13}{'samples/s':>11}")
    for n in args.items:
        model, vocab, codes, siblings = build(n, args.conf)
        model.train()
        tokens = vocab.codes_to_tokens(codes)
        groups = torch.as_tensor(vocab.softmax_groups(), dtype=torch.long)
        sib = None if siblings is None else torch.as_tensor(siblings, dtype=torch.long)
        rng = np.random.default_rng(1)

        def table_step():
            model.zero_grad(set_to_none=True)
            model.token_table().sum().backward()

        table = time_it(table_step, args.repeats)
        for b in args.batches:
            seqs = [history_tokens(rng.integers(0, n, 10), tokens) for _ in range(b)]
            weights = [np.r_[np.zeros(3, np.float32), np.ones(len(s) - 3, np.float32)] for s in seqs]
            x, y, w = (torch.as_tensor(a) for a in collate(seqs, weights))

            def step():
                model.zero_grad(set_to_none=True)
                sequence_loss(model, x, y, w, 0.0, groups, sib).backward()

            full = time_it(step, args.repeats)
            print(f"{n:>8}{b:>7}{table * 1e3:>10.1f}{full * 1e3:>10.1f}{table / full:>13.2f}{b / full:>11.1f}")


if __name__ == "__main__":
    main()
