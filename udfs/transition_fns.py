"""Spark side of the item-to-item transition table (genrec_model/serve/transitions.py): the pair weights of
one split's histories summed in Spark, so the driver only collects each item's `top_n` successors
(items x top_n rows), never the histories."""
from __future__ import annotations

import numpy as np

from genrec_model.serve.config import TransitionConfig
from genrec_model.serve.transitions import TransitionTable, from_pairs


def transition_pairs(events, cfg: TransitionConfig):
    """events (user_id, item_id, seq_pos) -> (src, dst, weight, row_total): each src item's `top_n` heaviest
    successors (ties: lower dst), weight = sum over histories of decay ** (distance - 1) for distances
    1..window, row_total = the src row's weight before the cut. One equi-join of each event with the events
    1..window positions later (rows = events x window, never users x events^2)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ev = events.withColumn("pos", F.row_number().over(Window.partitionBy("user_id").orderBy("seq_pos")))
    src = ev.select("user_id", F.col("item_id").alias("src"), F.col("pos").alias("src_pos"),
                    F.explode(F.sequence(F.col("pos") + 1, F.col("pos") + cfg.window)).alias("pos"))
    dst = ev.select("user_id", "pos", F.col("item_id").alias("dst"))
    pairs = src.join(dst, on=["user_id", "pos"]).groupBy("src", "dst").agg(
        F.sum(F.pow(F.lit(cfg.decay), F.col("pos") - F.col("src_pos") - 1)).alias("weight"))
    by_src = Window.partitionBy("src")
    ranked = pairs.withColumn("row_total", F.sum("weight").over(by_src)).withColumn(
        "rank", F.row_number().over(by_src.orderBy(F.col("weight").desc(), F.col("dst"))))
    return ranked.where(F.col("rank") <= cfg.top_n).select("src", "dst", "weight", "row_total")


def transition_table(interactions, split: str, as_of: str | None, item_ids: np.ndarray, cfg: TransitionConfig,
                     cold_share: float = 0.0, cold_seed: int = 0) -> TransitionTable:
    """The split's transition table over `item_ids` (the decoder's item index); pairs naming another item are
    dropped. Collects items x top_n rows."""
    from udfs.split_fns import split_events

    pairs = transition_pairs(split_events(interactions, split, as_of, cold_share, cold_seed), cfg).toPandas()
    index = {str(i): n for n, i in enumerate(item_ids)}
    src = pairs["src"].map(index)
    dst = pairs["dst"].map(index)
    known = src.notna() & dst.notna()
    src, dst = src[known].to_numpy(np.int64), dst[known].to_numpy(np.int64)
    total = np.zeros(len(item_ids))
    total[src] = pairs["row_total"][known].to_numpy(np.float64)
    return from_pairs(src, dst, pairs["weight"][known].to_numpy(np.float64), len(item_ids), cfg.top_n, total)
