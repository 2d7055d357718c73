"""Pick `recommend.serving.new_item_boost` on VALIDATION: decode every validation user once through the
production decode path (the exported ONNX model, `udfs/recommend_fns`: main search + the search over items
the model never saw in training), then re-rank the same candidates under each boost and print Recall/NDCG@10
on the `all`, `warm` and `cold` validation segments. The boost is applied after both searches, so one decode
serves every value. The chosen value is the one with the best `all` Recall@10 (ties: the smaller boost).

    python benchmarks/new_item_boost.py --conf conf/beauty.yaml --boosts 0 0.5 1 1.5 2 3
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from genrec_model.config import load_config  # noqa: E402
from genrec_model.data.splits import cold_item_mask  # noqa: E402
from genrec_model.decode.beam_search import decode  # noqa: E402
from genrec_model.decode.config import BeamSearchConfig  # noqa: E402
from genrec_model.evaluation.metrics import recall_ndcg_at_k  # noqa: E402
from genrec_model.model.sid_vocab import history_tokens  # noqa: E402
from genrec_model.serve.serving import recommend  # noqa: E402
from udfs.recommend_fns import beam_configs, new_item_candidates  # noqa: E402
from benchmarks.exported import exported_decoder, heldout_examples  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", default="conf/beauty.yaml")
    ap.add_argument("--boosts", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(args.conf, args.overrides)
    rc = cfg.recommend
    model, dec, ids, codes, seen = exported_decoder(cfg, "valid")
    hist, targets = heldout_examples(cfg, ids, model.max_history, splits=("valid",))["valid"]
    cold = cold_item_mask(ids, cfg.data.cold_item_share, cfg.data.cold_seed)
    seg = {"all": np.ones(len(targets), bool), "warm": ~cold[targets], "cold": cold[targets]}
    print(f"validation users {len(targets)} (cold {seg['cold'].sum()}), items {len(ids)}, "
          f"new to the model {int((~seen).sum())}", flush=True)
    toks = [history_tokens(h, dec.item_tokens) for h in hist]
    beam, _ = beam_configs(rc, dec.step_model.manifest["model_config"])
    items, scores = decode(dec.step_model, dec.trie, dec.level_starts, toks, beam)
    nb = BeamSearchConfig(beam_width=rc.new_item_beam, top_k=rc.new_item_beam, users_per_call=rc.users_per_call,
                          normalize=beam.normalize)
    is_new = dec.is_new
    new = (*new_item_candidates(dec, toks, nb), is_new)
    popularity = np.bincount(np.concatenate(hist), minlength=len(ids)).astype(float)
    rows = []
    for b in args.boosts:
        serving = replace(rc.serving, top_k=args.k, new_item_boost=b, new_item_share=0.0)
        ranked = recommend(items, scores, hist, popularity, serving, new=new).items
        row = {"boost": b, "new_slots_per_user": float(is_new[ranked[ranked >= 0]].sum() / len(ranked))}
        for name, mask in seg.items():
            m = recall_ndcg_at_k(ranked[mask], targets[mask], ks=(args.k,))
            row[f"R@{args.k} {name}"], row[f"N@{args.k} {name}"] = m[f"recall@{args.k}"], m[f"ndcg@{args.k}"]
        rows.append(row)
        print(pd.DataFrame(rows).round(4).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    best = table.sort_values([f"R@{args.k} all", "boost"], ascending=[False, True]).iloc[0]
    print(f"chosen on validation (best all R@{args.k}): new_item_boost={best['boost']}")


if __name__ == "__main__":
    main()
