"""Spark-facing pieces of the `sids` stage: co-occurrence counts and frozen-codebook assignment."""
from __future__ import annotations

import numpy as np
import pandas as pd

from genrec_model.catalog.collab import fuse_embeddings
from genrec_model.catalog.frozen_rqvae import FrozenRQVAE

SEMANTIC_DDL = "item_id string, semantic array<int>"


def training_sample_df(embeddings, cap: int | None, seed: int):
    """(item_id, embedding) of at most `cap` items: those with the smallest seeded hash of their id, so the
    sample depends on seed and ids only (not on partitioning) and Spark keeps only `cap` rows per task
    (TakeOrdered); the driver never sees the rest."""
    from pyspark.sql import functions as F

    rows = embeddings.select("item_id", "embedding")
    if cap is None:
        return rows
    return rows.orderBy(F.xxhash64(F.col("item_id"), F.lit(int(seed))), "item_id").limit(int(cap))


def cooccurrence_counts_df(interactions, window: int, holdout_last: int = 0):
    """(item_a, item_b, n): ordered pairs of distinct items at distance 1..window in a user's history,
    counted both ways — the distributed twin of `genrec_model.catalog.collab.cooccurrence_counts`.
    holdout_last drops each user's last events first (leave-one-out evaluation must not see them)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if holdout_last:
        last = F.max("seq_pos").over(Window.partitionBy("user_id"))
        interactions = (interactions.withColumn("_last", last)
                        .where(F.col("seq_pos") <= F.col("_last") - holdout_last).drop("_last"))

    left = interactions.select("user_id", F.col("item_id").alias("item_a"), F.col("seq_pos").alias("pos_a"))
    right = interactions.select("user_id", F.col("item_id").alias("item_b"), F.col("seq_pos").alias("pos_b"))
    pairs = left.join(right, on="user_id").where(
        (F.abs(F.col("pos_a") - F.col("pos_b")) >= 1) & (F.abs(F.col("pos_a") - F.col("pos_b")) <= window)
        & (F.col("item_a") != F.col("item_b")))
    return pairs.groupBy("item_a", "item_b").agg(F.count("*").alias("n"))


def assign_semantic(pdf: pd.DataFrame, frozen: FrozenRQVAE, collab_weight: float | None, collab_dim: int,
                    chunk_size: int) -> pd.DataFrame:
    """Rows (item_id, embedding[, collab]) -> (item_id, semantic codes) with the frozen codebook."""
    text = np.stack(pdf["embedding"].to_numpy()).astype(np.float32) if len(pdf) else np.zeros((0, 1), np.float32)
    if collab_weight is not None:
        collab = np.stack([np.zeros(collab_dim, np.float32) if v is None else np.asarray(v, np.float32)
                           for v in pdf["collab"]]) if len(pdf) else np.zeros((0, collab_dim), np.float32)
        text = fuse_embeddings(text, collab, collab_weight)
    codes = frozen.assign(text, chunk_size) if len(pdf) else np.zeros((0, frozen.n_levels), np.int32)
    return pd.DataFrame({"item_id": pdf["item_id"].to_numpy(), "semantic": list(codes.astype(np.int32))})


def make_assign_fn(frozen: FrozenRQVAE, collab_weight: float | None, collab_dim: int, chunk_size: int):
    def assign_partition(batches):
        for pdf in batches:
            yield assign_semantic(pdf, frozen, collab_weight, collab_dim, chunk_size)
    return assign_partition
