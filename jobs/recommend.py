"""Stage `recommend`: per user, constrained beam search over the exported model in Spark partitions
-> `recommendations`, one atomic replace per run date (re-runs never duplicate).

    spark-submit jobs/recommend.py --conf conf/beauty.yaml run_date=2026-11-24
    spark-submit jobs/recommend.py --conf conf/beauty.yaml start_date=2026-11-01 end_date=2026-11-07

Refuses to run, writing nothing, when the model was trained on another codebook version than
the `item_sids` snapshot it would decode against.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import time

import numpy as np
import pandas as pd

from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_SIDS, RECOMMENDATIONS
from jobs.common import JobContext, Progress, log_event, main_for

HOLDOUT = {"serve": 0, "valid": 2, "test": 1}


def histories_df(interactions, split: str, as_of: str | None):
    """(user_id, history) oldest first, with the split's held-out items removed; as_of (a date) keeps
    only events before the end of that day where timestamps exist."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if as_of:
        end = dt.datetime.fromisoformat(as_of).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
        interactions = interactions.where(F.col("timestamp").isNull() | (F.col("timestamp") < F.lit(end)))
    w = Window.partitionBy("user_id")
    drop = HOLDOUT[split]
    ranked = interactions.select("user_id", "item_id", "seq_pos",
                                 F.row_number().over(w.orderBy(F.col("seq_pos").desc())).alias("from_end"),
                                 F.count("*").over(w).alias("n"))
    if split != "serve":  # evaluate users who have the held-out item(s) (test: >= 2 events, valid: >= 3)
        ranked = ranked.where(F.col("n") >= drop + 1)
    kept = ranked.where(F.col("from_end") > drop)
    users = ranked.select("user_id").distinct()
    hist = kept.groupBy("user_id").agg(F.sort_array(F.collect_list(F.struct("seq_pos", "item_id"))).alias("ev"))
    return users.join(hist, on="user_id", how="left").select(
        "user_id", F.coalesce(F.col("ev.item_id"), F.array().cast("array<string>")).alias("history"))


def run(ctx: JobContext) -> None:
    from pyspark.sql import functions as F

    from genrec_model.decode.config import BeamSearchConfig
    from genrec_model.model.export import load_manifest
    from genrec_model.model.model_store import ITEMS, MANIFEST, resolve_version
    from udfs.recommend_fns import OUT_DDL, make_recommend_fn

    cfg = ctx.cfg.recommend
    t0 = time.perf_counter()
    models_root = ctx.cfg.artifact_path("models")
    version = resolve_version(models_root, cfg.model_version)
    model_dir = os.path.join(models_root, version)
    onnx_dir = os.path.join(model_dir, "onnx")
    manifest = load_manifest(onnx_dir)
    sids = ctx.read(ITEM_SIDS)
    in_use = sorted(r[0] for r in sids.select("codebook_version").distinct().collect())
    if in_use != [manifest["codebook_version"]]:
        raise RuntimeError(
            f"model {version} was trained on codebook {manifest['codebook_version']!r} but item_sids holds "
            f"{in_use}: retrain and export the model on the current SIDs (nothing was written)")
    train_manifest = pd.read_json(os.path.join(model_dir, MANIFEST), typ="series")
    max_history = int(train_manifest["fit_config"]["data"]["max_history"])
    items = pd.read_parquet(os.path.join(model_dir, ITEMS)).sort_values("index")
    current = {r[0] for r in sids.select("item_id").collect()}
    keep = items["item_id"].isin(current).to_numpy()
    item_ids = items["item_id"].to_numpy()[keep]
    codes = np.stack(items["codes"].to_numpy())[keep].astype(np.int64)
    interactions = ctx.read(INTERACTIONS)
    categories = _categories(ctx, item_ids) if cfg.serving.prior == "category" and cfg.serving.fusion_weight > 0 else None
    beam = BeamSearchConfig(beam_width=cfg.beam_width, top_k=cfg.candidates, users_per_call=cfg.users_per_call,
                            constrained=cfg.constrained)
    ctx.counts.update({"items_decodable": len(item_ids), "items_dropped_not_in_catalog": int((~keep).sum()),
                       "load_seconds": time.perf_counter() - t0})
    progress = Progress("recommend", "run_date", len(ctx.cfg.run_dates()))
    for run_date in ctx.cfg.run_dates():
        t1 = time.perf_counter()
        generated_at = dt.datetime.now(dt.timezone.utc)
        as_of = run_date if ctx.cfg.start_date else None
        parts = []
        for split in cfg.splits:
            hist = histories_df(interactions, split, as_of)
            pop = _popularity(hist, item_ids)
            fn = make_recommend_fn(onnx_dir, item_ids, codes, pop, beam, cfg.serving, max_history, cfg.use_gpu,
                                   manifest["codebook_version"], f"{version}:{split}:{run_date}", categories)
            recs = hist.repartition(cfg.partitions).mapInPandas(fn, OUT_DDL)
            parts.append(recs.select(
                "user_id", "recs", "is_fallback", F.lit(version).alias("model_version"),
                F.lit(manifest["codebook_version"]).alias("codebook_version"),
                F.lit(generated_at).alias("generated_at"), F.lit(run_date).alias("run_date"),
                F.lit(split).alias("split"), F.lit(cfg.model_name).alias("model")))
        out = parts[0]
        for p in parts[1:]:
            out = out.unionByName(p)
        result = ctx.write(out, RECOMMENDATIONS,
                           replace_partitions=[{"run_date": run_date, "split": s, "model": cfg.model_name}
                                               for s in cfg.splits],
                           metadata={"genrec.model_version": version,
                                     "genrec.codebook_version": manifest["codebook_version"]})
        seconds = time.perf_counter() - t1
        written = ctx.store.read(RECOMMENDATIONS, result.version)[0].where(F.col("run_date") == run_date)
        fallback = written.where("is_fallback").count()
        prefix = "" if len(ctx.cfg.run_dates()) == 1 else f"{run_date}."
        ctx.counts.update({f"{prefix}users": result.num_rows, f"{prefix}fallback_users": fallback,
                           f"{prefix}decode_write_seconds": seconds,
                           f"{prefix}users_per_s": result.num_rows / max(seconds, 1e-9)})
        log_event("recommend", "written", run_date=run_date, splits=",".join(cfg.splits), rows=result.num_rows,
                  fallback=fallback, seconds=round(seconds, 1), users_per_s=round(result.num_rows / seconds, 1))
        progress.advance(run_date=run_date, users=result.num_rows)


def _categories(ctx: JobContext, item_ids: np.ndarray) -> np.ndarray:
    """Category code per decodable item for the category prior (same level as `evaluate` uses)."""
    from genrec_model.serve.diversity import category_codes
    from udfs.eval_fns import category_level

    catalog = ctx.read(CATALOG)
    level = category_level(catalog, ctx.cfg.data.category_level)
    paths = catalog.select("item_id", "categories").toPandas().set_index("item_id")["categories"]
    ctx.counts["category_level"] = level
    return category_codes([paths.get(i) for i in item_ids], level)


def _popularity(hist, item_ids: np.ndarray) -> np.ndarray:
    """Interaction counts per decodable item over the (held-out-free) histories."""
    from pyspark.sql import functions as F

    counts = hist.select(F.explode("history").alias("item_id")).groupBy("item_id").count().toPandas()
    index = pd.Series(np.arange(len(item_ids)), index=item_ids)
    out = np.zeros(len(item_ids), dtype=np.float64)
    known = counts["item_id"].isin(index.index)
    out[index[counts["item_id"][known]].to_numpy()] = counts["count"][known].to_numpy()
    return out


if __name__ == "__main__":
    sys.exit(main_for("recommend", run))
