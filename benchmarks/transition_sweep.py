"""The `transition` baseline (genrec_model/serve/transitions.py) on the VALIDATION split for a few counting
settings: how recommend.serving.transitions' defaults were picked. Reads a lakehouse written by ingest (no
Spark: delta-rs), withholds the config's cold items as the baselines job does, and for each setting prints
Recall/NDCG@10 on all / warm validation users (whole catalog, seen items removed, popularity fill).

    python benchmarks/transition_sweep.py --conf conf/beauty.yaml --settings 1,1 3,0.5 5,0.7 8,0.8
    (a setting is window,decay; --recent n,decay sets how a history is read)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np
from deltalake import DeltaTable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from genrec_model.baselines.cold_start import baseline_data, warm_only  # noqa: E402
from genrec_model.config import load_config  # noqa: E402
from genrec_model.data.splits import cold_item_mask, split_history  # noqa: E402
from genrec_model.evaluation.metrics import recall_ndcg_at_k  # noqa: E402
from genrec_model.serve.popularity import popularity_counts, popularity_order  # noqa: E402
from genrec_model.serve.transitions import count_transitions, transition_rank  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", default="conf/beauty.yaml")
    ap.add_argument("--settings", nargs="+", default=["1,1", "3,0.5", "5,0.7"], help="window,decay pairs")
    ap.add_argument("--recent", nargs="+", default=[], help="n_recent,recent_decay pairs (default: the config's)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(args.conf, args.overrides)
    inter = DeltaTable(os.path.join(cfg.lakehouse_root(), "interactions")).to_pandas()
    items = np.sort(inter["item_id"].unique())
    inter["ix"] = np.searchsorted(items, inter["item_id"])
    seqs = [g.to_numpy() for _, g in inter.sort_values(["user_id", "seq_pos"]).groupby("user_id")["ix"]]
    cold = cold_item_mask(items, cfg.data.cold_item_share, cfg.data.cold_seed)
    data = baseline_data(seqs, cold)
    cases = data.cases["valid"]
    hist = [ex.history for _, ex in cases]
    target = np.asarray([ex.target for _, ex in cases])
    warm = ~cold[target]
    order = popularity_order(popularity_counts(data.train, len(items)))
    kept = [warm_only(split_history(s, "valid"), cold) for s in seqs]
    base = cfg.recommend.serving.transitions
    recents = [tuple(float(x) for x in r.split(",")) for r in args.recent] or [(base.n_recent, base.recent_decay)]
    print(f"items {len(items)} (cold {cold.sum()}), validation users {len(target)} (warm {warm.sum()})", flush=True)
    for setting in args.settings:
        window, decay = setting.split(",")
        for n_recent, recent_decay in recents:
            tcfg = replace(base, window=int(window), decay=float(decay), n_recent=int(n_recent),
                           recent_decay=float(recent_decay))
            t0 = time.process_time()
            table = count_transitions(kept, len(items), tcfg)
            ranked, filled = transition_rank(table, hist, 10, tcfg, order, hist if cfg.recommend.serving.filter_seen else None)
            every, w = recall_ndcg_at_k(ranked, target, ks=(10,)), recall_ndcg_at_k(ranked[warm], target[warm], ks=(10,))
            print(f"window={tcfg.window} decay={tcfg.decay} n_recent={tcfg.n_recent} recent_decay={tcfg.recent_decay} "
                  f"valid_R@10={every['recall@10']:.4f} valid_N@10={every['ndcg@10']:.4f} "
                  f"warm_R@10={w['recall@10']:.4f} warm_N@10={w['ndcg@10']:.4f} pairs={table.nnz} "
                  f"filled={filled.mean():.4f} cpu_s={time.process_time() - t0:.1f}", flush=True)


if __name__ == "__main__":
    main()
