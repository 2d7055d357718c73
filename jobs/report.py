"""`genrec report`: the metrics of a run date, SID statistics and decode throughput -> an HTML report
with PNG plots under `<artifacts.root>/reports/<run_date>/`.

    genrec report --conf conf/beauty.yaml run_date=2026-11-24
"""
from __future__ import annotations

import sys

import pandas as pd

from genrec_model.data.schemas import JOB_RUNS, METRICS
from jobs.common import JobContext, log_event, main_for

SID_KEYS = ("items", "collision_rate_before_dedup", "dedup_digits", "recon_mse", "train_seconds",
            "assign_items_per_s", "utilization_l1", "utilization_l2", "utilization_l3",
            "max_items_prefix_l1", "max_items_prefix_l2", "max_items_prefix_l3")


def latest_counts(runs: pd.DataFrame, job: str) -> dict:
    done = runs[(runs["job"] == job) & (runs["status"] == "succeeded")].sort_values("started_at")
    return dict(done.iloc[-1]["counts"]) if len(done) else {}


def run(ctx: JobContext) -> None:
    from pyspark.sql import functions as F

    from genrec_model.evaluation.report import write_report

    metrics = ctx.read(METRICS).where(F.col("run_date") == F.lit(ctx.run_day)).toPandas()
    if metrics.empty:
        raise RuntimeError(f"no metrics for run_date={ctx.run_date}: run `evaluate` first")
    # per segment (all | warm | cold under the cold-start protocol): tables and plots split by it
    ranking = metrics[metrics["metric"].isin(["recall", "ndcg"])][["model", "split", "segment", "metric", "k",
                                                                   "value", "dataset"]].astype({"k": int})
    runs = ctx.read(JOB_RUNS).toPandas()
    sids = latest_counts(runs, "sids")
    rec = latest_counts(runs, "recommend")
    train = latest_counts(runs, "train")
    other = metrics[~metrics["metric"].isin(["recall", "ndcg"])][["model", "split", "segment", "metric", "k",
                                                                  "value"]]
    base = latest_counts(runs, "baselines")
    sections = {
        "Coverage, diversity, fallback, cold-item share": other.sort_values(
            ["segment", "model", "split", "metric"], key=lambda c: c.map({"all": 0, "warm": 1, "cold": 2}).fillna(3)
            if c.name == "segment" else c, kind="stable").reset_index(drop=True),
        "Semantic IDs (latest sids run)": {k: sids[k] for k in SID_KEYS if k in sids},
        "Training (latest train run)": train,
        "Baselines (latest baselines run: SASRec epochs and training CPU seconds, cold items withheld)":
            {k: v for k, v in base.items() if k.startswith(("sasrec_", "cold_", "content_knn_"))},
        "Decoding (latest recommend run)": {k: v for k, v in rec.items() if "users" in k or "seconds" in k},
    }
    path = write_report(ctx.cfg.artifact_path("reports", ctx.run_date), ranking, extra_sections=sections,
                        title=f"genrec evaluation — {ctx.cfg.data.dataset} — {ctx.run_date}",
                        anchor_dataset=ctx.cfg.data.dataset)
    ctx.counts["metric_rows"] = len(metrics)
    log_event("report", "written", path=str(path))


if __name__ == "__main__":
    sys.exit(main_for("report", run))
