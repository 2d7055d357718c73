"""Free vs content item tokens on the same split, by VALIDATION metrics (model choice never looks at test).

Reads a lakehouse written by ingest -> embed -> sids (no Spark: delta-rs), withholds the config's cold
items exactly as the train job does, trains both item representations with `fit_generator` at the same
config and epoch budget, then ranks validation users' next items over the whole catalog (constrained
beam search; the free model can only reach the items it was trained on) and prints Recall/NDCG@10 on
the `all`, `warm` and `cold` validation segments, parameters, training tokens/s and the item level's
size per decode step.

    python benchmarks/item_representation.py --conf conf/beauty.yaml --epochs 4 --users 3000
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
from deltalake import DeltaTable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from genrec_model.catalog.sid_codes import level_sizes_of  # noqa: E402
from genrec_model.config import load_config  # noqa: E402
from genrec_model.data.splits import cold_item_mask  # noqa: E402
from genrec_model.decode.trie import build_trie  # noqa: E402
from genrec_model.evaluation.metrics import recall_ndcg_at_k  # noqa: E402
from genrec_model.model.fit import fit_generator, rank_histories  # noqa: E402
from genrec_model.model.item_content import item_level, set_catalog  # noqa: E402
from genrec_model.model.sid_vocab import SidVocab  # noqa: E402
from genrec_model.model.train_data import eval_examples  # noqa: E402


def load(root: str):
    read = lambda t: DeltaTable(os.path.join(root, t)).to_pandas()  # noqa: E731
    sids, catalog, inter, emb = read("item_sids"), read("catalog"), read("interactions"), read("item_embeddings")
    items = sids.merge(catalog[["item_id", "title"]], on="item_id").sort_values("item_id").reset_index(drop=True)
    index = pd.Series(np.arange(len(items)), index=items["item_id"])
    inter = inter[inter["item_id"].isin(index.index)].sort_values(["user_id", "seq_pos"])
    seqs = [index[g["item_id"]].to_numpy() for _, g in inter.groupby("user_id", sort=True)]
    content = np.stack(emb.set_index("item_id").loc[items["item_id"], "embedding"].map(np.asarray).to_numpy())
    codes = np.stack(items["codes"].to_numpy()).astype(np.int64)
    return items, seqs, codes, content.astype(np.float32), np.stack(sids["codes"]).astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", default="conf/beauty.yaml")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--users", type=int, default=3000, help="validation users ranked per model")
    ap.add_argument("--reps", nargs="+", default=["free", "content"], choices=["free", "content"])
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(args.conf, args.overrides)
    items, seqs, codes, content, issued = load(cfg.lakehouse_root())
    sizes = level_sizes_of(issued, cfg.sids.rqvae.codebook_size)
    cold = cold_item_mask(items["item_id"], cfg.data.cold_item_share, cfg.data.cold_seed)
    warm_index = np.cumsum(~cold) - 1  # full item index -> warm item index
    train_seqs = [warm_index[s[~cold[s]]] for s in seqs]  # withheld items' events removed, as the train job
    vh, vt, _ = eval_examples(seqs, cfg.train.data.max_history, "valid")
    pick = np.random.default_rng(7).permutation(len(vt))[:args.users]
    vh, vt = [vh[i] for i in pick], vt[pick]
    seg = {"all": np.ones(len(vt), bool), "warm": ~cold[vt], "cold": cold[vt]}
    print(f"items {len(items)} (cold {cold.sum()}), users {len(seqs)}, validation users ranked {len(vt)} "
          f"(cold {seg['cold'].sum()}), epochs {args.epochs}", flush=True)
    rows = []
    for rep in args.reps:
        fit_cfg = replace(cfg.train, item_representation=rep, refit_for_serving=False,
                          trainer=replace(cfg.train.trainer, epochs=args.epochs, progress=False))
        t0 = time.process_time()
        fitted = fit_generator(train_seqs, codes[~cold], sizes, items["title"][~cold].fillna("").tolist(), fit_cfg,
                               item_content=content[~cold])
        cpu = time.process_time() - t0
        model, vocab = fitted.model, fitted.vocab
        if rep == "content":  # score tonight's whole catalog, withheld items included
            vocab = SidVocab(tuple(sizes), task_tokens=vocab.task_tokens, n_extra=vocab.n_extra)
            set_catalog(model, vocab, codes, content)
            reachable, hist = np.arange(len(items)), vh
        else:  # a free model knows only its training items; withheld ones in a history are dropped
            reachable = np.flatnonzero(~cold)
            hist = [warm_index[h[~cold[h]]] for h in vh]
        trie = build_trie(codes[reachable], list(vocab.level_sizes))
        tokens = vocab.codes_to_tokens(codes[reachable])
        to_local = {g: n for n, g in enumerate(reachable)}
        usable = [n for n, h in enumerate(hist) if len(h)]
        local_hist = [np.asarray(h) if rep == "free" else np.asarray([to_local[i] for i in h]) for h in hist]
        ranked = np.full((len(vt), 10), -1)
        r, _ = rank_histories(model, vocab, trie, tokens, [local_hist[n] for n in usable], cfg.recommend.beam_width, 10)
        ranked[usable] = np.where(r >= 0, reachable[np.maximum(r, 0)], -1)
        for name, mask in seg.items():
            m = recall_ndcg_at_k(ranked[mask], vt[mask], ks=(10,)) if mask.any() else {"recall@10": 0, "ndcg@10": 0}
            rows.append({"items": rep, "segment": name, "R@10": m["recall@10"], "N@10": m["ndcg@10"]})
        lo, hi = item_level(vocab)
        rows[-1].update(params=model.num_params(), train_cpu_s=round(cpu), best_epoch=fitted.result.best_epoch,
                        item_level_per_step=hi - lo)
        print(pd.DataFrame(rows).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    if len(args.reps) < 2:
        return
    wide = table.pivot(index="items", columns="segment", values="R@10")
    print(f"valid_R@10 free all/warm/cold={wide.loc['free', 'all']:.4f}/{wide.loc['free', 'warm']:.4f}/"
          f"{wide.loc['free', 'cold']:.4f} content={wide.loc['content', 'all']:.4f}/{wide.loc['content', 'warm']:.4f}/"
          f"{wide.loc['content', 'cold']:.4f}")


if __name__ == "__main__":
    main()
