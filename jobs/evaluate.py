"""Stage `evaluate`: the `recommendations` of a run date (test/valid splits, every model in them)
against the held-out items -> `metrics` (replaced per run date), per segment: `all` users and, under the
cold-start protocol (data.cold_item_share > 0), `warm` and `cold` (the held-out item is a withheld item);
see udfs/eval_fns.py. Every catalog item is a candidate: the lists are full-catalog rankings.

    spark-submit jobs/evaluate.py --conf conf/beauty.yaml run_date=2026-11-24
"""
from __future__ import annotations

import sys

from genrec_model.data.schemas import CATALOG, INTERACTIONS, METRICS, RECOMMENDATIONS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from pyspark.sql import functions as F

    from udfs.eval_fns import (beyond_accuracy, by_segment, category_level, cold_item_share, ranking_metrics,
                               target_ranks, target_segments, within_list_length)
    from udfs.split_fns import heldout_targets

    cfg = ctx.cfg.evaluate
    share, seed = ctx.cfg.data.cold_item_share, ctx.cfg.data.cold_seed
    segmented = share > 0
    ctx.migrate(METRICS)  # a table from before the segment column or the run_date type: before the work
    recs = ctx.read(RECOMMENDATIONS).where((F.col("run_date") == F.lit(ctx.run_day))
                                           & F.col("split").isin(list(cfg.splits))).cache()
    if recs.limit(1).count() == 0:
        raise RuntimeError(f"no recommendations for run_date={ctx.run_date} and splits {list(cfg.splits)}: "
                           f"run `recommend` with recommend.splits including them first")
    targets = target_segments(heldout_targets(ctx.read(INTERACTIONS), tuple(cfg.splits)), share, seed).cache()
    catalog = ctx.read(CATALOG)
    level = category_level(catalog, ctx.cfg.data.category_level)
    ctx.counts["category_level"] = level
    # each list under `all`, and under its user's segment (lists of users without a target: `all` only)
    seg_recs = by_segment(recs.join(targets.select("split", "user_id", "segment"), on=["split", "user_id"],
                                    how="left"), segmented)
    ranked = by_segment(target_ranks(recs, targets), segmented)
    metrics = ranking_metrics(ranked, list(cfg.ks)).unionByName(beyond_accuracy(seg_recs, catalog, cfg.diversity_k,
                                                                                level))
    if segmented:
        metrics = metrics.unionByName(cold_item_share(seg_recs, cfg.diversity_k, share, seed))
        cold_targets = targets.where(F.col("segment") == "cold").groupBy("split").count().collect()
        for r in cold_targets:
            ctx.counts[f"cold_targets.{r['split']}"] = r["count"]
    metrics = within_list_length(recs, metrics)
    out = metrics.select(F.lit(ctx.run_id).alias("run_id"), F.lit(ctx.cfg.data.dataset).alias("dataset"),
                         "model", "split", "segment", "metric", "k", "value",
                         F.lit(ctx.cfg.config_hash()).alias("config_hash"), F.lit(ctx.run_day).alias("run_date"))
    ctx.write(out, METRICS, replace_partitions=[{"run_date": ctx.run_date}])
    rows = (ctx.read(METRICS).where(F.col("run_date") == F.lit(ctx.run_day))
            .orderBy("model", "split", "segment", "metric", "k"))
    for r in rows.collect():
        seg = "" if r["segment"] == "all" else f".{r['segment']}"  # `all` keeps the pre-segment keys
        key = f"{r['model']}.{r['split']}{seg}.{r['metric']}" + (f"@{r['k']}" if r["k"] is not None else "")
        ctx.counts[key] = r["value"]
    recs.unpersist()
    targets.unpersist()
    log_event("evaluate", "metrics", rows=len(ctx.counts), segmented=segmented)


if __name__ == "__main__":
    sys.exit(main_for("evaluate", run))
