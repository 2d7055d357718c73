"""Stage `ingest`: raw dataset files -> `catalog`, `interactions`, `rejects` Delta tables.

    spark-submit jobs/ingest.py --conf conf/beauty.yaml [key=value ...]
"""
from __future__ import annotations

import sys

from genrec_model.data.schemas import CATALOG, INTERACTIONS, REJECTS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from udfs.ingest_readers import CATEGORY_SEPARATORS, HAS_TIMESTAMPS, read_raw
    from udfs.ingest_validate import validate_interactions, validate_items

    data = ctx.cfg.data
    raw_items, raw_inter = read_raw(ctx.spark, data, ctx.cfg.artifact_path("raw", data.dataset))
    raw_items = raw_items.persist(StorageLevel.MEMORY_AND_DISK)
    raw_inter = raw_inter.persist(StorageLevel.MEMORY_AND_DISK)
    n_raw_items, n_raw_inter = raw_items.count(), raw_inter.count()
    log_event("ingest", "read", dataset=data.dataset, format=data.format, raw_items=n_raw_items,
              raw_interactions=n_raw_inter)

    catalog, item_rejects = validate_items(raw_items, CATEGORY_SEPARATORS[data.format],
                                           data.item_text_html_unescape, data.max_text_chars)
    catalog = catalog.persist(StorageLevel.MEMORY_AND_DISK)
    interactions, inter_rejects = validate_interactions(raw_inter, catalog.select("item_id"),
                                                        HAS_TIMESTAMPS[data.format], data.min_timestamp,
                                                        data.max_timestamp)
    catalog_written = ctx.write(catalog, CATALOG)
    inter_written = ctx.write(interactions, INTERACTIONS)
    rejects = item_rejects.unionByName(inter_rejects).select(
        F.lit(ctx.run_id).alias("run_id"), "source", "reason", "record", F.lit(ctx.run_day).alias("run_date"))
    rejects_written = ctx.write(rejects, REJECTS, replace_partitions=[{"run_date": ctx.run_date}])

    reasons = {r["reason"]: r["n"] for r in
               ctx.store.read(REJECTS, rejects_written.version)[0].where(F.col("run_date") == F.lit(ctx.run_day))
               .groupBy("source", "reason").agg(F.count("*").alias("n")).select(
                   F.concat_ws(".", "source", "reason").alias("reason"), "n").collect()}
    item_rej = sum(v for k, v in reasons.items() if k.startswith("catalog."))
    inter_rej = sum(v for k, v in reasons.items() if k.startswith("interactions."))
    ctx.counts.update({"raw_items": n_raw_items, "catalog": catalog_written.num_rows, "item_rejects": item_rej,
                       "raw_interactions": n_raw_inter, "interactions": inter_written.num_rows,
                       "interaction_rejects": inter_rej, **{f"rejects.{k}": v for k, v in reasons.items()}})
    log_event("ingest", "rejects", **reasons)
    raw_items.unpersist(), raw_inter.unpersist(), catalog.unpersist()
    for name, raw, accepted, rejected in (("catalog", n_raw_items, catalog_written.num_rows, item_rej),
                                          ("interactions", n_raw_inter, inter_written.num_rows, inter_rej)):
        if raw != accepted + rejected:
            raise RuntimeError(f"ingest {name}: input {raw} != accepted {accepted} + rejected {rejected}")
    log_event("ingest", "reconciled", catalog=f"{n_raw_items}={catalog_written.num_rows}+{item_rej}",
              interactions=f"{n_raw_inter}={inter_written.num_rows}+{inter_rej}")


if __name__ == "__main__":
    sys.exit(main_for("ingest", run))
