"""The cheap alternative to alignment a skeptic tries first: keep the SFT model and re-rank its beams at
serving time by log-probability + alpha * judge score. Decodes the validation and test users once through the
production decode path (the exported model of `recommend.model_version`, the recommend job's beam and serving
settings), scores every candidate with the judge (`recommend.judge_version`, empty = latest) exactly as
`recommend.serving.judge_weight` does in the job (`udfs/recommend_fns.judge_rescored`), and prints Recall/NDCG@k per alpha on both splits
(alpha is chosen on validation), with a PNG of the curve.

    python benchmarks/judge_rerank.py --conf conf/beauty.yaml recommend.model_version=m-... --alphas 0 0.5 1 1.5 2
    (config overrides before --alphas; recommend.model_version: the SFT model)
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
from deltalake import DeltaTable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from genrec_model.align.judge import ItemSide, SemanticJudge  # noqa: E402
from genrec_model.config import load_config  # noqa: E402
from genrec_model.decode.beam_search import decode  # noqa: E402
from genrec_model.evaluation.metrics import recall_ndcg_at_k  # noqa: E402
from genrec_model.model.artifacts import resolve_version  # noqa: E402
from genrec_model.model.sid_vocab import history_tokens  # noqa: E402
from genrec_model.serve.serving import recommend  # noqa: E402
from udfs.recommend_fns import DecodeInputs, beam_configs, judge_rescored  # noqa: E402
from benchmarks.exported import exported_decoder, heldout_examples  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", default="conf/beauty.yaml")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--png", default="")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(args.conf, args.overrides)
    rc = cfg.recommend
    model, dec, ids, codes, seen = exported_decoder(cfg, "test")
    splits = heldout_examples(cfg, ids, model.max_history)
    lake = cfg.lakehouse_root()
    emb = DeltaTable(os.path.join(lake, "item_embeddings")).to_pandas().set_index("item_id")["embedding"]
    items = ItemSide.build(np.stack([np.asarray(emb[i], dtype=np.float32) for i in ids]), np.zeros(len(ids)), codes[:, 0])
    judges = cfg.artifact_path("judges")
    judge_version = resolve_version(judges, rc.judge_version)
    judge = SemanticJudge.load(os.path.join(judges, judge_version))
    beam, _ = beam_configs(rc, dec.step_model.manifest["model_config"])
    print(f"model {model.version}, judge {judge_version}, beam {beam.beam_width}, candidates {beam.top_k}, "
          f"users valid {len(splits['valid'][1])} test {len(splits['test'][1])}", flush=True)
    rows = []
    for name, (hist, targets) in splits.items():
        toks = [history_tokens(h, dec.item_tokens) for h in hist]
        items, scores = decode(dec.step_model, dec.trie, dec.level_starts, toks, beam)
        popularity = np.bincount(np.concatenate(hist), minlength=len(ids)).astype(float)
        # as the recommend job: the judge's popularity aspect from this split's histories
        side = items.with_popularity(popularity)
        for a in args.alphas:
            serving = replace(rc.serving, top_k=args.k, judge_weight=a)
            inputs = DecodeInputs(popularity, beam, serving, judge=(judge, side))
            rescored = judge_rescored(inputs, hist, items, scores) if a else scores
            ranked = recommend(items, rescored, hist, popularity, serving).items
            m = recall_ndcg_at_k(ranked, targets, ks=(args.k,))
            rows.append({"split": name, "alpha": a, f"R@{args.k}": m[f"recall@{args.k}"], f"N@{args.k}": m[f"ndcg@{args.k}"]})
        print(pd.DataFrame(rows).round(4).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    valid = table[table["split"] == "valid"].sort_values([f"N@{args.k}", "alpha"], ascending=[False, True])
    best = float(valid.iloc[0]["alpha"])
    test = table[(table["split"] == "test") & (table["alpha"] == best)].iloc[0]
    print(f"chosen on validation (best N@{args.k}): alpha={best}; test R@{args.k}={test[f'R@{args.k}']:.4f} "
          f"N@{args.k}={test[f'N@{args.k}']:.4f}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, g in table.groupby("split"):
            ax.plot(g[f"R@{args.k}"], g[f"N@{args.k}"], marker="o", label=name)
            for _, r in g.iterrows():
                ax.annotate(f"{r['alpha']:g}", (r[f"R@{args.k}"], r[f"N@{args.k}"]), fontsize=7)
        ax.set_xlabel(f"Recall@{args.k}")
        ax.set_ylabel(f"NDCG@{args.k}")
        ax.set_title("SFT beams re-ranked by log-prob + alpha * judge")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png)


if __name__ == "__main__":
    main()
