"""Stage `evaluate`: the `recommendations` of a run date (test/valid splits, every model in them)
against the held-out items -> `metrics` (replaced per run date).

    spark-submit jobs/evaluate.py --conf conf/beauty.yaml run_date=2026-11-24
"""
from __future__ import annotations

import sys

from genrec_model.data.schemas import CATALOG, INTERACTIONS, METRICS, RECOMMENDATIONS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from pyspark.sql import functions as F

    from udfs.eval_fns import beyond_accuracy, category_level, ranking_metrics, target_ranks, within_list_length
    from udfs.split_fns import heldout_targets

    cfg = ctx.cfg.evaluate
    recs = ctx.read(RECOMMENDATIONS).where((F.col("run_date") == ctx.run_date)
                                           & F.col("split").isin(list(cfg.splits))).cache()
    if recs.limit(1).count() == 0:
        raise RuntimeError(f"no recommendations for run_date={ctx.run_date} and splits {list(cfg.splits)}: "
                           f"run `recommend` with recommend.splits including them first")
    targets = heldout_targets(ctx.read(INTERACTIONS), tuple(cfg.splits))
    catalog = ctx.read(CATALOG)
    level = category_level(catalog, ctx.cfg.data.category_level)
    ctx.counts["category_level"] = level
    metrics = within_list_length(recs, ranking_metrics(target_ranks(recs, targets), list(cfg.ks)).unionByName(
        beyond_accuracy(recs, catalog, cfg.diversity_k, level)))
    out = metrics.select(F.lit(ctx.run_id).alias("run_id"), F.lit(ctx.cfg.data.dataset).alias("dataset"),
                         "model", "split", "metric", "k", "value",
                         F.lit(ctx.cfg.config_hash()).alias("config_hash"), F.lit(ctx.run_date).alias("run_date"))
    ctx.write(out, METRICS, replace_partitions=[{"run_date": ctx.run_date}])
    rows = ctx.read(METRICS).where(F.col("run_date") == ctx.run_date).orderBy("model", "split", "metric", "k")
    for r in rows.collect():
        key = f"{r['model']}.{r['split']}.{r['metric']}" + (f"@{r['k']}" if r["k"] is not None else "")
        ctx.counts[key] = r["value"]
    recs.unpersist()
    log_event("evaluate", "metrics", rows=len(ctx.counts))


if __name__ == "__main__":
    sys.exit(main_for("evaluate", run))
