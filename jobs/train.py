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
import pyarrow.dataset as pads

from genrec_model.config_loader import stable_hash, to_dict
from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_SIDS
from jobs.common import JobContext, log_event, main_for


def item_table(ctx: JobContext) -> pd.DataFrame:
    """(item_id, codes, codebook_version, title) sorted by item_id: row number = item index."""
    sids = ctx.read(ITEM_SIDS).select("item_id", "codes", "codebook_version")
    titles = ctx.read(CATALOG).select("item_id", "title")
    items = sids.join(titles, on="item_id", how="left").toPandas()  # one small row per item
    versions = items["codebook_version"].unique()
    if len(versions) != 1:
        raise RuntimeError(f"item_sids holds codebook versions {list(versions)}; rerun the sids stage")
    return items.sort_values("item_id", kind="stable").reset_index(drop=True)


def user_sequences(ctx: JobContext, items: pd.DataFrame, shard_dir: str, with_users: bool = False):
    """Histories as item indices (oldest first), written by Spark as shards, then streamed back.
    Users sorted by user_id; with_users also returns their ids."""
    from pyspark.sql import functions as F

    index = ctx.spark.createDataFrame(pd.DataFrame({"item_id": items["item_id"], "idx": np.arange(len(items))}))
    seqs = (ctx.read(INTERACTIONS).join(index, on="item_id")
            .groupBy("user_id").agg(F.sort_array(F.collect_list(F.struct("seq_pos", "idx"))).alias("ev"))
            .select("user_id", F.col("ev.idx").alias("items")))
    seqs.write.mode("overwrite").parquet(shard_dir)
    table = pads.dataset(shard_dir, format="parquet").to_table()
    users = np.asarray(table.column("user_id").to_pylist(), dtype=object)
    order = np.argsort(users, kind="stable")
    items_col = table.column("items").to_pylist()
    sequences = [np.asarray(items_col[i], dtype=np.int64) for i in order]
    return (list(users[order]), sequences) if with_users else sequences


def run(ctx: JobContext) -> None:
    from genrec_model.model.fit import fit_generator
    from genrec_model.model.model_store import save_model

    cfg = ctx.cfg.train
    items = item_table(ctx)
    codes = np.stack(items["codes"].to_numpy()).astype(np.int64)
    # semantic levels span the codebook; the last (dedup digit or item token) what is in use
    level_sizes = [_codebook_size(ctx, items)] * (codes.shape[1] - 1) + [int(codes[:, -1].max()) + 1]
    version = f"m-{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}-{stable_hash(to_dict(cfg), 6)}"
    out_dir = ctx.cfg.artifact_path("models", version)
    sequences = user_sequences(ctx, items, os.path.join(out_dir, "train_shards"))
    log_event("train", "data", users=len(sequences), items=len(items), level_sizes=level_sizes,
              events=int(sum(len(s) for s in sequences)))
    fitted = fit_generator(sequences, codes, level_sizes, items["title"].fillna("").tolist(), cfg, out_dir)
    res = fitted.result
    manifest = {"codebook_version": items["codebook_version"].iloc[0], "level_sizes": level_sizes,
                "words": fitted.words, "fit_config": to_dict(cfg), "config_hash": ctx.cfg.config_hash(),
                "best_epoch": res.best_epoch, "valid": res.best_metrics, "train_minutes": res.minutes,
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
