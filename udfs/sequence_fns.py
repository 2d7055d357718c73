"""Spark transforms shared by the stages that train on user histories (`train`, `baselines`): the item
table a model is trained on and every user's history as item indices."""
from __future__ import annotations

import numpy as np
import pandas as pd


def item_table(item_sids, catalog) -> pd.DataFrame:
    """(item_id, codes, codebook_version, title) of the catalog's items, sorted by item_id: row number =
    item index. item_sids also keeps retired items (their SIDs stay reserved); they are not in the table."""
    sids = item_sids.select("item_id", "codes", "codebook_version")
    titles = catalog.select("item_id", "title")
    items = sids.join(titles, on="item_id", how="inner").toPandas()  # one small row per item
    versions = items["codebook_version"].unique()
    if len(versions) != 1:
        raise RuntimeError(f"item_sids holds codebook versions {list(versions)}; rerun the sids stage")
    return items.sort_values("item_id", kind="stable").reset_index(drop=True)


def issued_codes(item_sids) -> np.ndarray:
    """(N, L) every code tuple issued under the current codebook, retired items' included: what the
    vocabulary's level sizes must cover (catalog.sid_codes.level_sizes_of)."""
    rows = item_sids.select("codes").toPandas()["codes"]
    return np.stack(rows.to_numpy()).astype(np.int64)


def item_content(item_embeddings, item_ids) -> np.ndarray:
    """(N, D) float32 text embedding per item, in `item_ids` order (every item must have one)."""
    emb = item_embeddings.select("item_id", "embedding").toPandas().set_index("item_id")["embedding"]
    missing = [i for i in item_ids if i not in emb.index]
    if missing:
        raise RuntimeError(f"{len(missing)} items have no embedding (e.g. {missing[:3]}): run the embed stage")
    return np.stack([np.asarray(emb[i], dtype=np.float32) for i in item_ids])


def write_history_shards(spark, interactions, items: pd.DataFrame, shard_dir: str, shards: int = 1) -> dict:
    """Every user's history as item indices (oldest first), written by Spark as `shards` hash shards
    (layout: genrec_model/data/history_shards.py; a user's events whose item is not in `items` are
    dropped). Returns the users and events counted in Spark: nothing per user comes to the driver."""
    from pyspark.sql import functions as F

    from genrec_model.data.history_shards import SHARD_COLUMN

    index = spark.createDataFrame(pd.DataFrame({"item_id": items["item_id"], "idx": np.arange(len(items))}))
    seqs = (interactions.join(index, on="item_id")
            .groupBy("user_id").agg(F.sort_array(F.collect_list(F.struct("seq_pos", "idx"))).alias("ev"))
            .select("user_id", F.col("ev.idx").cast("array<bigint>").alias("items"),
                    F.pmod(F.xxhash64("user_id"), F.lit(shards)).cast("int").alias(SHARD_COLUMN)))
    seqs.repartition(shards, SHARD_COLUMN).write.mode("overwrite").partitionBy(SHARD_COLUMN).parquet(shard_dir)
    row = (spark.read.parquet(shard_dir).agg(F.count(F.lit(1)).alias("users"),
                                             F.coalesce(F.sum(F.size("items")), F.lit(0)).alias("events"))
           .first())
    return {"users": int(row["users"]), "events": int(row["events"])}


def user_sequences(spark, interactions, items: pd.DataFrame, shard_dir: str, with_users: bool = False):
    """Every user's history as item indices (oldest first) on the driver, users sorted by user_id (with_users
    also returns their ids): the single-process path. Distributed training reads shards per rank instead."""
    from genrec_model.data.history_shards import read_history_shards

    write_history_shards(spark, interactions, items, shard_dir)
    users, sequences = read_history_shards(shard_dir)
    return (users, sequences) if with_users else sequences
