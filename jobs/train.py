"""Stage `train`: interactions + item_sids -> a generative model over Semantic IDs.

    spark-submit jobs/train.py --conf conf/beauty.yaml [train.trainer.max_minutes=60]

Per-user time-ordered histories are built in Spark and written as Parquet shards next to the model
(one per training process). With train.distributed.num_processes = 1 the driver reads them and trains
(CUDA when present); with more, pyspark's TorchDistributor runs that many DDP ranks, each reading only
its own shard, and the driver holds no per-user data. Leave-one-out as TIGER/P5.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys

import numpy as np
import pandas as pd

from genrec_model.config_loader import stable_hash, to_dict
from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_EMBEDDINGS, ITEM_SIDS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.catalog.sid_codes import level_sizes_of
    from genrec_model.data.splits import cold_item_mask
    from genrec_model.model.model_store import save_model
    from udfs.sequence_fns import issued_codes, item_content, item_table, write_history_shards

    cfg = ctx.cfg.train
    catalog_items = item_table(ctx.read(ITEM_SIDS), ctx.read(CATALOG))
    all_codes = np.stack(catalog_items["codes"].to_numpy()).astype(np.int64)
    level_sizes = level_sizes_of(issued_codes(ctx.read(ITEM_SIDS)), _codebook_size(ctx, catalog_items))
    # cold-start protocol: withheld items are not part of training at all (as if they arrived tonight);
    # the inner join in user_sequences drops their events
    cold = cold_item_mask(catalog_items["item_id"], ctx.cfg.data.cold_item_share, ctx.cfg.data.cold_seed)
    items = catalog_items[~cold].reset_index(drop=True)
    codes = all_codes[~cold]
    version = f"m-{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}-{stable_hash(to_dict(cfg), 6)}"
    out_dir = ctx.cfg.artifact_path("models", version)
    shard_dir = os.path.join(out_dir, "train_shards")
    processes = cfg.distributed.num_processes
    counts = write_history_shards(ctx.spark, ctx.read(INTERACTIONS), items, shard_dir, shards=processes)
    content = (item_content(ctx.read(ITEM_EMBEDDINGS), items["item_id"].tolist())
               if cfg.item_representation == "content" else None)
    log_event("train", "data", users=counts["users"], items=len(items), cold_items_withheld=int(cold.sum()),
              level_sizes=level_sizes, events=counts["events"], items_from=cfg.item_representation,
              processes=processes)
    from genrec_model.model.hardware import describe_cpu

    fitted = _fit(ctx, shard_dir, codes, level_sizes, items["title"].fillna("").tolist(), out_dir, content)
    res = fitted.result
    manifest = {"codebook_version": items["codebook_version"].iloc[0], "level_sizes": level_sizes,
                "words": fitted.words, "fit_config": to_dict(cfg), "config_hash": ctx.cfg.config_hash(),
                "best_epoch": res.best_epoch, "valid": res.best_metrics, "train_minutes": res.minutes, "precision": res.precision,
                "stopped": res.stopped, "history": res.history, "dataset": ctx.cfg.data.dataset,
                "train_processes": res.processes,
                "item_representation": cfg.item_representation, "cold_items_withheld": int(cold.sum()),
                "serving_refit": None if fitted.serving_result is None else {
                    "epochs": fitted.serving_result.best_epoch + 1, "minutes": fitted.serving_result.minutes},
                "run_id": ctx.run_id, "hardware": describe_cpu()}
    save_model(ctx.cfg.artifact_path("models"), version, fitted.model, fitted.vocab,
               items["item_id"].to_numpy(), codes, manifest, fitted.serving_model)
    ctx.counts.update({"users": counts["users"], "events": counts["events"], "items": len(items),
                       "cold_items_withheld": int(cold.sum()), "train_processes": res.processes,
                       "params": fitted.model.num_params(), "bf16": float(res.precision == "bf16"),
                       "train_minutes": res.minutes, "best_epoch": res.best_epoch,
                       "train_tokens_per_s": res.tokens / max(res.train_seconds, 1e-9),
                       "train_samples_per_s_per_process": res.samples / res.processes / max(res.train_seconds, 1e-9),
                       **{f"valid_{k}": v for k, v in res.best_metrics.items()}})
    log_event("train", "model", version=version, path=out_dir, valid=json.dumps(res.best_metrics))


def _fit(ctx: JobContext, shard_dir: str, codes, level_sizes, titles, out_dir, content):
    """fit_generator in the driver (one process) or on `num_processes` TorchDistributor ranks."""
    from genrec_model.data.history_shards import read_history_shards
    from genrec_model.model.distributed import load_fitted, rank_fit
    from genrec_model.model.fit import fit_generator

    cfg = ctx.cfg.train
    dcfg = cfg.distributed
    if dcfg.num_processes == 1:
        _, sequences = read_history_shards(shard_dir)
        return fit_generator(sequences, codes, level_sizes, titles, cfg, out_dir, content)
    from pyspark.ml.torch.distributor import TorchDistributor

    log_event("train", "distributed", processes=dcfg.num_processes, local_mode=dcfg.local_mode,
              use_gpu=dcfg.use_gpu, batch_per_process=cfg.trainer.batch_size // dcfg.num_processes)
    distributor = TorchDistributor(num_processes=dcfg.num_processes, local_mode=dcfg.local_mode,
                                   use_gpu=dcfg.use_gpu)
    path = distributor.run(rank_fit, shard_dir, codes, level_sizes, titles, cfg, out_dir, content, dcfg.use_gpu)
    return load_fitted(path)


def _codebook_size(ctx: JobContext, items: pd.DataFrame) -> int:
    from genrec_model.catalog.codebook_store import read_manifest

    path = ctx.cfg.artifact_path("codebooks", items["codebook_version"].iloc[0])
    return int(read_manifest(path)["codebook_size"])


if __name__ == "__main__":
    sys.exit(main_for("train", run))
