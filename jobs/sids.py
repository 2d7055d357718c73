"""Stage `sids`: item_embeddings -> item_sids via an RQ-VAE codebook (trained on the driver,
applied in Spark partitions), collisions resolved so every SID names exactly one item.

    spark-submit jobs/sids.py --conf conf/beauty.yaml [sids.retrain=true]

Incremental: items already in item_sids keep their SID; new items are coded with the codebook
version in use. A retrain (or a first run) creates a new codebook version and recodes everything.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np
import pandas as pd

from genrec_model.data.schemas import INTERACTIONS, ITEM_EMBEDDINGS, ITEM_SIDS
from jobs.common import JobContext, log_event, main_for

COLLAB_FILE = "collab_embeddings.parquet"


def run(ctx: JobContext) -> None:
    from genrec_model.catalog.codebook_store import CodebookMeta, load_codebook, save_codebook
    from genrec_model.catalog.rqvae import freeze, train_rqvae
    from genrec_model.catalog.sid_codes import assign_sids, sid_stats, sid_string
    from udfs.sids_fns import SEMANTIC_DDL, make_assign_fn, training_sample_df

    cfg = ctx.cfg.sids
    emb = ctx.read(ITEM_EMBEDDINGS)
    existing = ctx.read(ITEM_SIDS) if ctx.store.version(ITEM_SIDS) is not None else None
    versions = [r[0] for r in existing.select("codebook_version").distinct().collect()] if existing else []
    if len(versions) > 1:
        raise RuntimeError(f"item_sids mixes codebook versions {versions}: rerun with sids.retrain=true")
    codebook_root = ctx.cfg.artifact_path("codebooks")
    models = [r[0] for r in emb.select("model_name").distinct().collect()]
    if len(models) != 1:
        raise RuntimeError(f"item_embeddings must come from one model, found {models}: rerun embed")
    report = None
    if versions and not cfg.retrain:
        cb_dir = os.path.join(codebook_root, versions[0])
        frozen, manifest = load_codebook(cb_dir, expect={"dedup_scheme": cfg.scheme, "embedding_model": models[0]})
        collab = _load_collab(cb_dir, manifest)
        log_event("sids", "codebook", version=manifest["version"], reused=True)
    else:
        import torch

        torch.set_num_threads(cfg.threads)
        t0 = time.perf_counter()
        # the driver's training set: a bounded, seeded sample drawn in Spark
        train = training_sample_df(emb, cfg.rqvae.train_sample_size, cfg.rqvae.seed).toPandas()
        train = train.sort_values("item_id", kind="stable").reset_index(drop=True)
        x = np.stack(train["embedding"].to_numpy()).astype(np.float32)
        collab = _train_collab(ctx, cfg) if cfg.collab.enabled else None
        if collab is not None:
            from genrec_model.catalog.collab import fuse_embeddings

            cvec = np.stack([collab.get(i, np.zeros(cfg.collab.dim, np.float32)) for i in train["item_id"]])
            x = fuse_embeddings(x, cvec, cfg.collab.weight)
        rq_cfg = dataclasses.replace(cfg.rqvae, input_dim=x.shape[1], train_sample_size=None)
        model, report = train_rqvae(x, rq_cfg)
        frozen = freeze(model)
        meta = CodebookMeta(
            embedding_model=models[0], embedding_dim=x.shape[1], dedup_scheme=cfg.scheme,
            train_sample_size=len(x),
            metrics={"recon_mse": report.final_recon_mse, "utilization": report.final_utilization,
                     "train_seconds": time.perf_counter() - t0},
            extra={"rqvae": dataclasses.asdict(rq_cfg), "prefix_levels": cfg.prefix_levels,
                   "collab": dataclasses.asdict(cfg.collab)})
        cb_dir = str(save_codebook(codebook_root, frozen, meta))
        if collab is not None:
            pd.DataFrame({"item_id": list(collab), "collab": [v.tolist() for v in collab.values()]}).to_parquet(
                os.path.join(cb_dir, COLLAB_FILE))
        manifest = load_codebook(cb_dir)[1]
        existing = None  # a new codebook recodes every item: never mix versions
        log_event("sids", "codebook", version=manifest["version"], reused=False, train_items=len(x),
                  recon_mse=report.final_recon_mse, seconds=round(time.perf_counter() - t0, 1))

    t0 = time.perf_counter()
    rows = emb.select("item_id", "embedding")
    weight = None
    if collab is not None:
        weight = manifest["collab"]["weight"] if "collab" in manifest else manifest["extra"]["collab"]["weight"]
        cdf = ctx.spark.createDataFrame(pd.DataFrame({"item_id": list(collab),
                                                      "collab": [v.tolist() for v in collab.values()]}),
                                        "item_id string, collab array<float>")
        rows = rows.join(cdf, on="item_id", how="left")
    dim = manifest["extra"]["collab"]["dim"] if collab is not None else 0
    semantic = (rows.repartition(cfg.partitions)
                .mapInPandas(make_assign_fn(frozen, weight, dim, cfg.rqvae.assign_chunk_size), SEMANTIC_DDL)
                .toPandas().sort_values("item_id", kind="stable").reset_index(drop=True))
    assign_seconds = time.perf_counter() - t0
    sem = np.stack(semantic["semantic"].to_numpy()).astype(np.int64) if len(semantic) else \
        np.zeros((0, frozen.n_levels), np.int64)
    old = ({r["item_id"]: list(r["codes"]) for r in existing.select("item_id", "codes").collect()}
           if existing is not None else None)
    assignment = assign_sids(sem, semantic["item_id"].tolist(), frozen.codebook_size, cfg.scheme,
                             cfg.prefix_levels, old)
    # items that left the catalog keep their row: an issued SID stays reserved and never names another
    # item while this codebook version is in use (readers take the catalog's items, udfs/sequence_fns)
    retired = sorted(set(old or {}) - set(semantic["item_id"]))
    ids = semantic["item_id"].tolist() + retired
    codes = [c.astype(np.int32) for c in assignment.codes] + [np.asarray(old[i], np.int32) for i in retired]
    out = pd.DataFrame({"item_id": ids, "codes": codes, "sid": [sid_string(c) for c in codes],
                        "codebook_version": manifest["version"], "scheme": cfg.scheme})
    if out["sid"].duplicated().any():
        raise RuntimeError("SID collision after resolution: refusing to write")
    from udfs.delta_store import spark_schema

    ctx.write(ctx.spark.createDataFrame(out, spark_schema(ITEM_SIDS)), ITEM_SIDS,
              metadata={"genrec.codebook_version": manifest["version"],
                        "genrec.level_sizes": ",".join(map(str, assignment.level_sizes))})
    stats = sid_stats(sem, frozen.codebook_size)
    ctx.counts.update({
        "items": len(semantic), "items_retired_reserved": len(retired), "items_new_codes": assignment.n_new, "items_stale_prefix": assignment.n_stale,
        "collision_rate_before_dedup": stats.collision_rate, "unique_semantic_tuples": stats.n_unique_tuples,
        "dedup_digits": stats.n_dedup_digits, "assign_seconds": assign_seconds,
        "assign_items_per_s": len(out) / max(assign_seconds, 1e-9), "codebook_reused": float(report is None),
        **{f"utilization_l{i + 1}": u for i, u in enumerate(stats.utilization)},
        **{f"max_items_prefix_l{i + 1}": m for i, m in enumerate(stats.max_items_per_prefix)},
        **({"recon_mse": report.final_recon_mse, "train_seconds": report.train_seconds} if report else {}),
    })
    log_event("sids", "codes", version=manifest["version"], scheme=cfg.scheme, level_sizes=assignment.level_sizes)


def _train_collab(ctx: JobContext, cfg) -> dict[str, np.ndarray]:
    """Co-occurrence counted in Spark; only the aggregated sparse counts reach the driver. Under the
    cold-start protocol (data.cold_item_share) a withheld item's interactions are dropped first: it gets no
    collaborative vector (zeros, like any item arriving overnight), and its events link no other items.
    seq_pos is kept, so the holdout of each user's last events still never reaches an evaluation target."""
    from genrec_model.catalog.collab import ppmi_svd_embeddings
    from udfs.sids_fns import cooccurrence_counts_df
    from udfs.split_fns import without_cold_items

    warm = without_cold_items(ctx.read(INTERACTIONS), ctx.cfg.data.cold_item_share, ctx.cfg.data.cold_seed)
    counts = cooccurrence_counts_df(warm, cfg.collab.window, cfg.collab.holdout_last).toPandas()
    items = sorted(set(counts["item_a"]) | set(counts["item_b"]))
    index = {item: i for i, item in enumerate(items)}
    vectors = ppmi_svd_embeddings(counts["item_a"].map(index).to_numpy(), counts["item_b"].map(index).to_numpy(),
                                  counts["n"].to_numpy(), len(items), cfg.collab.dim, cfg.collab.seed)
    log_event("sids", "collab", items=len(items), pairs=len(counts), dim=cfg.collab.dim)
    return dict(zip(items, vectors))


def _load_collab(cb_dir: str, manifest: dict) -> dict[str, np.ndarray] | None:
    if not manifest.get("extra", {}).get("collab", {}).get("enabled"):
        return None
    table = pd.read_parquet(os.path.join(cb_dir, COLLAB_FILE))
    return {i: np.asarray(v, np.float32) for i, v in zip(table["item_id"], table["collab"])}


if __name__ == "__main__":
    sys.exit(main_for("sids", run))
