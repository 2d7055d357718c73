"""Spark transforms of the ingest: raw rows -> (accepted, rejected), DataFrame -> DataFrame.

Row-local rules run in `mapInPandas` over `genrec_model.data.ingest_rules`; the rules that
need the whole data set (duplicates, unknown items) run here as joins and windows.
Every input row leaves in exactly one of the two outputs.
"""
from __future__ import annotations

from functools import partial

from genrec_model.data.ingest_rules import clean_interactions, clean_items

_CLEAN_ITEMS_DDL = ("item_id string, title string, brand string, categories array<string>, description string, "
                    "price double, text_hash string, src_order bigint, reason string, record string")
_CLEAN_INTERACTIONS_DDL = ("user_id string, item_id string, timestamp timestamp, rating double, event_order bigint, "
                           "reason string, record string")


def _map_items(batches, category_sep, unescape, max_chars):
    for pdf in batches:
        yield clean_items(pdf, category_sep, unescape, max_chars)


def _map_interactions(batches, require_timestamp, min_ts, max_ts):
    for pdf in batches:
        yield clean_interactions(pdf, require_timestamp, min_ts, max_ts)


def validate_items(raw_items, category_sep: str, unescape: bool, max_chars: int):
    """-> (catalog rows, rejected rows [source, reason, record]). Duplicated ids keep the first row."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cleaned = raw_items.mapInPandas(partial(_map_items, category_sep=category_sep, unescape=unescape,
                                            max_chars=max_chars), _CLEAN_ITEMS_DDL)
    first = Window.partitionBy("item_id").orderBy("src_order")
    ranked = cleaned.withColumn(
        "reason", F.when(F.col("reason").isNull() & (F.row_number().over(first) > 1), F.lit("duplicate_item_id"))
        .otherwise(F.col("reason")))
    accepted = ranked.where(F.col("reason").isNull()).drop("reason", "record", "src_order")
    rejected = ranked.where(F.col("reason").isNotNull()).select(F.lit("catalog").alias("source"), "reason", "record")
    return accepted, rejected


def validate_interactions(raw_interactions, catalog_item_ids, require_timestamp: bool, min_ts: int, max_ts: int):
    """-> (interaction rows with seq_pos, rejected rows). Unknown items and exact repeats are rejected.

    A repeat is the same (user, item, timestamp); without timestamps, the same (user, item, position).
    seq_pos orders a user's accepted events by timestamp, then source position.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cleaned = raw_interactions.mapInPandas(partial(_map_interactions, require_timestamp=require_timestamp,
                                                   min_ts=min_ts, max_ts=max_ts), _CLEAN_INTERACTIONS_DDL)
    known = catalog_item_ids.select("item_id", F.lit(True).alias("_known"))
    joined = cleaned.join(F.broadcast(known), on="item_id", how="left")
    when_ts = F.coalesce(F.col("timestamp").cast("string"), F.col("event_order").cast("string"))
    first = Window.partitionBy("user_id", "item_id", when_ts).orderBy("event_order")
    flagged = joined.withColumn(
        "reason",
        F.when(F.col("reason").isNotNull(), F.col("reason"))
        .when(F.col("_known").isNull(), F.lit("unknown_item"))
        .when(F.row_number().over(first) > 1, F.lit("duplicate_interaction")))
    accepted = flagged.where(F.col("reason").isNull())
    order = Window.partitionBy("user_id").orderBy(F.col("timestamp").asc_nulls_first(), "event_order")
    accepted = accepted.select("user_id", "item_id", "timestamp",
                               (F.row_number().over(order) - 1).cast("long").alias("seq_pos"), "rating")
    rejected = flagged.where(F.col("reason").isNotNull()).select(
        F.lit("interactions").alias("source"), "reason", "record")
    return accepted, rejected
