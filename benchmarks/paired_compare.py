"""Paired comparison of models' served lists on one split: Recall/NDCG@k of each model in `recommendations`
(the lists `evaluate` scores) and the difference to a baseline model with a paired bootstrap 95% interval
(users resampled). Targets are the held-out items (`data/splits.py`), as in `evaluate`.

    python benchmarks/paired_compare.py --conf conf/beauty.yaml --run-date 2026-12-01 --split test \
        --baseline genrec-sft --models genrec genrec-business genrec-reward-sum
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import numpy as np
import pandas as pd
from deltalake import DeltaTable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from genrec_model.config import load_config  # noqa: E402
from genrec_model.data.splits import HELD_OUT, min_events  # noqa: E402
from genrec_model.evaluation.metrics import paired_bootstrap, per_user_gains  # noqa: E402


def held_out_targets(interactions: pd.DataFrame, split: str) -> pd.Series:
    """user_id -> the item `split` holds out (users with too few events have none)."""
    inter = interactions.sort_values(["user_id", "seq_pos"])
    size = inter.groupby("user_id")["item_id"].transform("size")
    pos = inter.groupby("user_id").cumcount()
    pick = (size >= min_events(split)) & (pos == size - HELD_OUT[split])
    return inter.loc[pick].set_index("user_id")["item_id"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", default="conf/beauty.yaml")
    ap.add_argument("--run-date", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--baseline", default="genrec-sft")
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(args.conf, args.overrides)
    lake = cfg.lakehouse_root()
    day = dt.date.fromisoformat(args.run_date)
    names = [args.baseline, *args.models]
    recs = DeltaTable(os.path.join(lake, "recommendations")).to_pandas(
        filters=[("run_date", "=", day), ("split", "=", args.split)], columns=["user_id", "model", "recs"])
    recs = recs[recs["model"].isin(names)]
    missing = sorted(set(names) - set(recs["model"]))
    if missing:
        raise SystemExit(f"no {args.split} lists for {missing} on {args.run_date}: run recommend with "
                         "recommend.model_name=... first")
    targets = held_out_targets(DeltaTable(os.path.join(lake, "interactions")).to_pandas(
        columns=["user_id", "item_id", "seq_pos"]), args.split)
    users = sorted(set.intersection(*(set(g["user_id"]) for _, g in recs.groupby("model"))) & set(targets.index))
    target = targets.loc[users].to_numpy()
    per_model = {}
    for name in names:
        lists = recs[recs["model"] == name].set_index("user_id").loc[users, "recs"]
        ranked = np.full((len(users), args.k), "", dtype=object)
        for u, r in enumerate(lists):
            got = [x["item_id"] for x in r][: args.k]
            ranked[u, : len(got)] = got
        per_model[name] = per_user_gains(ranked, target, args.k)
    base_r, base_n = per_model[args.baseline]
    rows = []
    for name in names:
        r, n = per_model[name]
        row = {"model": name, f"R@{args.k}": r.mean(), f"N@{args.k}": n.mean()}
        if name != args.baseline:
            for metric, a, b in ((f"R@{args.k}", base_r, r), (f"N@{args.k}", base_n, n)):
                mean, lo, hi = paired_bootstrap(a, b, args.boot)
                row[f"d{metric} [95% CI]"] = f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                row[f"{metric} ratio"] = b.mean() / max(a.mean(), 1e-12)
        rows.append(row)
    print(f"{args.split} users {len(users)}, run_date {args.run_date}, baseline {args.baseline}")
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
