"""Stage `train`: interactions + item_sids -> a generative model over Semantic IDs.

    spark-submit jobs/train.py --conf conf/beauty.yaml [train.trainer.max_minutes=60]

Per-user time-ordered histories are built in Spark and written as Parquet shards next to the
model; the trainer (driver, CUDA when present) streams them. Leave-one-out as TIGER/P5.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys

import numpy as np
import pandas as pd

from genrec_model.config_loader import stable_hash, to_dict
from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_SIDS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.model.fit import fit_generator
    from genrec_model.model.model_store import save_model
    from udfs.sequence_fns import item_table, user_sequences

    cfg = ctx.cfg.train
    items = item_table(ctx.read(ITEM_SIDS), ctx.read(CATALOG))
    codes = np.stack(items["codes"].to_numpy()).astype(np.int64)
    # semantic levels span the codebook; the last (dedup digit or item token) what is in use
    level_sizes = [_codebook_size(ctx, items)] * (codes.shape[1] - 1) + [int(codes[:, -1].max()) + 1]
    version = f"m-{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}-{stable_hash(to_dict(cfg), 6)}"
    out_dir = ctx.cfg.artifact_path("models", version)
    sequences = user_sequences(ctx.spark, ctx.read(INTERACTIONS), items, os.path.join(out_dir, "train_shards"))
    log_event("train", "data", users=len(sequences), items=len(items), level_sizes=level_sizes,
              events=int(sum(len(s) for s in sequences)))
    fitted = fit_generator(sequences, codes, level_sizes, items["title"].fillna("").tolist(), cfg, out_dir)
    res = fitted.result
    manifest = {"codebook_version": items["codebook_version"].iloc[0], "level_sizes": level_sizes,
                "words": fitted.words, "fit_config": to_dict(cfg), "config_hash": ctx.cfg.config_hash(),
                "best_epoch": res.best_epoch, "valid": res.best_metrics, "train_minutes": res.minutes, "precision": res.precision,
                "stopped": res.stopped, "history": res.history, "dataset": ctx.cfg.data.dataset,
                "run_id": ctx.run_id}
    save_model(ctx.cfg.artifact_path("models"), version, fitted.model, fitted.vocab,
               items["item_id"].to_numpy(), codes, manifest)
    ctx.counts.update({"users": len(sequences), "items": len(items), "params": fitted.model.num_params(),
                       "train_minutes": res.minutes, "best_epoch": res.best_epoch,
                       **{f"valid_{k}": v for k, v in res.best_metrics.items()}})
    log_event("train", "model", version=version, path=out_dir, valid=json.dumps(res.best_metrics))


def _codebook_size(ctx: JobContext, items: pd.DataFrame) -> int:
    from genrec_model.catalog.codebook_store import read_manifest

    path = ctx.cfg.artifact_path("codebooks", items["codebook_version"].iloc[0])
    return int(read_manifest(path)["codebook_size"])


if __name__ == "__main__":
    sys.exit(main_for("train", run))
