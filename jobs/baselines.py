"""Stage `baselines`: most-popular and SASRec (full-softmax cross-entropy) lists for the evaluation
splits, written to `recommendations` under their own `model` value so `evaluate` scores them with
exactly the same code as the generative model.

    spark-submit jobs/baselines.py --conf conf/beauty.yaml run_date=2026-11-24
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys

import numpy as np
import pandas as pd

from genrec_model.data.schemas import CATALOG, INTERACTIONS, RECOMMENDATIONS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.config_loader import stable_hash
    from genrec_model.data.splits import split_sequence
    from genrec_model.serve.popularity import popularity_counts, popularity_rank
    from udfs.delta_store import spark_schema
    from udfs.sequence_fns import user_sequences

    cfg = ctx.cfg.baselines
    k = ctx.cfg.recommend.serving.top_k
    filter_seen = ctx.cfg.recommend.serving.filter_seen
    splits = [s for s in ctx.cfg.recommend.splits if s in ("test", "valid")]
    if not splits:
        raise RuntimeError("baselines need recommend.splits to include test and/or valid")
    items = ctx.read(CATALOG).select("item_id").toPandas().sort_values("item_id").reset_index(drop=True)
    shard_dir = ctx.cfg.artifact_path("baselines", ctx.run_date, "shards")
    user_ids, sequences = user_sequences(ctx.spark, ctx.read(INTERACTIONS), items, shard_dir, with_users=True)
    parts = [split_sequence(s, 10 ** 9) for s in sequences]
    train_prefixes = [p[0] for p in parts]
    cases = {"test": [(u, p[2]) for u, p in enumerate(parts) if p[2] is not None],
             "valid": [(u, p[1]) for u, p in enumerate(parts) if p[1] is not None]}
    now = dt.datetime.now(dt.timezone.utc)
    frames = []

    def emit(model: str, version: str, split: str, users: list[int], ranked: np.ndarray) -> None:
        recs = [[{"item_id": items["item_id"].iloc[i], "score": float(-r), "rank": r + 1}
                 for r, i in enumerate(row) if i >= 0] for row in ranked]
        frames.append(pd.DataFrame({"user_id": [user_ids[u] for u in users], "recs": recs, "is_fallback": False,
                                    "model_version": version, "codebook_version": None, "generated_at": now,
                                    "run_date": ctx.run_date, "split": split, "model": model}))

    if "popularity" in cfg.models:
        counts = popularity_counts(train_prefixes, len(items))
        for split in splits:
            users = [u for u, _ in cases[split]]
            seen = [ex.history for _, ex in cases[split]] if filter_seen else None
            emit("popularity", "popularity", split, users, popularity_rank(counts, len(users), k, seen))
    if "sasrec" in cfg.models:
        from genrec_model.baselines.sasrec_train import sasrec_rank, train_sasrec

        if cfg.sasrec.n_items:
            raise ValueError("baselines.sasrec.n_items is set from the catalog; leave it 0")
        scfg = dataclasses.replace(cfg.sasrec, n_items=len(items))
        model, history = train_sasrec(train_prefixes, [ex for _, ex in cases["valid"]], scfg, cfg.sasrec_train)
        version = f"sasrec-{stable_hash([dataclasses.asdict(scfg), dataclasses.asdict(cfg.sasrec_train)], 8)}"
        for split in splits:
            users = [u for u, _ in cases[split]]
            hist = [ex.history for _, ex in cases[split]]
            emit("sasrec", version, split, users, sasrec_rank(model, hist, k, hist if filter_seen else None))
        ctx.counts["sasrec_epochs"] = len(history)
    out = ctx.spark.createDataFrame(pd.concat(frames, ignore_index=True), spark_schema(RECOMMENDATIONS))
    result = ctx.write(out, RECOMMENDATIONS, replace_partitions=[
        {"run_date": ctx.run_date, "split": s, "model": m} for s in splits for m in cfg.models])
    ctx.counts["rows"] = result.num_rows
    log_event("baselines", "written", models=",".join(cfg.models), splits=",".join(splits), rows=result.num_rows,
              shards=os.path.basename(shard_dir))


if __name__ == "__main__":
    sys.exit(main_for("baselines", run))
