"""Stage `embed`: catalog -> item_embeddings, embedding only new items and items whose text changed.

    spark-submit jobs/embed.py --conf conf/beauty.yaml [embed.full_refresh=true]
"""
from __future__ import annotations

import datetime as dt
import sys
import time

from genrec_model.config_loader import stable_hash
from genrec_model.data.schemas import CATALOG, ITEM_EMBEDDINGS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from genrec_model.catalog.text_encoder import default_model_path, resolve_model_name, weights_fingerprint
    from udfs.delta_store import spark_schema
    from udfs.embed_fns import make_embed_fn

    cfg = ctx.cfg.embed
    model_path = cfg.model_path or default_model_path()
    # The label recorded with (and keying) every vector names the weights model_path really holds.
    model_name = resolve_model_name(model_path, cfg.model_name)
    fingerprint = weights_fingerprint(model_path)
    template_hash = stable_hash([cfg.template, cfg.separator, cfg.max_length], 12)
    catalog = ctx.read(CATALOG)
    existing = None
    if ctx.store.version(ITEM_EMBEDDINGS) is not None and not cfg.full_refresh:
        existing = ctx.read(ITEM_EMBEDDINGS)
    if existing is not None:
        fresh = existing.where((F.col("model_name") == model_name) & (F.col("template_hash") == template_hash))
        keep = fresh.join(catalog.select("item_id", "text_hash"), on=["item_id", "text_hash"], how="inner")
        todo = catalog.join(keep.select("item_id"), on="item_id", how="left_anti")
    else:
        keep, todo = None, catalog
    todo = todo.repartition(cfg.partitions).persist(StorageLevel.MEMORY_AND_DISK)
    n_todo = todo.count()
    n_keep = keep.count() if keep is not None else 0
    log_event("embed", "plan", to_embed=n_todo, unchanged=n_keep, model=model_name)

    now = dt.datetime.now(dt.timezone.utc)
    fn = make_embed_fn(model_path, cfg.max_length, cfg.batch_size, list(cfg.template), cfg.separator,
                       model_name, template_hash, now, fingerprint=fingerprint)
    embedded = todo.mapInPandas(fn, spark_schema(ITEM_EMBEDDINGS))
    out = embedded if keep is None else keep.select(*ITEM_EMBEDDINGS.columns).unionByName(embedded)
    t0 = time.perf_counter()
    result = ctx.write(out, ITEM_EMBEDDINGS, metadata={"genrec.embedding_model": model_name})
    seconds = time.perf_counter() - t0
    todo.unpersist()
    ctx.counts.update({"items_embedded": n_todo, "items_unchanged": n_keep, "items_total": result.num_rows,
                       "embed_seconds": seconds, "items_per_s": n_todo / seconds if n_todo else 0.0})


if __name__ == "__main__":
    sys.exit(main_for("embed", run))
