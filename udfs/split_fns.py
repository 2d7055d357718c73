"""Spark transforms of the leave-one-out splits (genrec_model/data/splits.py): the histories a split
decodes from and the targets it is scored on. DataFrame -> DataFrame, no I/O."""
from __future__ import annotations

import datetime as dt

from genrec_model.data.splits import HELD_OUT, min_events


def histories_df(interactions, split: str, as_of: str | None):
    """(user_id, history) oldest first, with the split's held-out items removed; as_of (a date) keeps
    only events before the end of that day where timestamps exist. Evaluation splits keep only users
    who have the split's target."""
    from pyspark.sql import functions as F

    ranked = ranked_events(interactions, as_of)
    if min_events(split):
        ranked = ranked.where(F.col("n") >= min_events(split))
    kept = ranked.where(in_split_history(split))
    users = ranked.select("user_id").distinct()
    hist = kept.groupBy("user_id").agg(F.sort_array(F.collect_list(F.struct("seq_pos", "item_id"))).alias("ev"))
    return users.join(hist, on="user_id", how="left").select(
        "user_id", F.coalesce(F.col("ev.item_id"), F.array().cast("array<string>")).alias("history"))


def in_split_history(split: str):
    """Column predicate over `ranked_events` rows: the event is in the user's `split` history (before the split's
    held-out events, for a user long enough to have its target). numpy twin: data/splits.split_history."""
    from pyspark.sql import functions as F

    return (F.col("from_end") > HELD_OUT[split]) & (F.col("n") >= min_events(split))


def split_events(interactions, split: str, as_of: str | None, cold_share: float = 0.0, cold_seed: int = 0):
    """(user_id, item_id, seq_pos) of the events a split's histories hold, minus every event with a withheld item
    (data.cold_item_share): what a collaborative count of that split may see. Positions come from the full
    sequence, so the held-out items are the ones `evaluate` scores."""
    from pyspark.sql import functions as F

    keep = in_split_history(split)
    if cold_share > 0:
        keep = keep & ~cold_item_col(F.col("item_id"), cold_share, cold_seed)
    return ranked_events(interactions, as_of).where(keep).select("user_id", "item_id", "seq_pos")


def ranked_events(interactions, as_of: str | None):
    """(user_id, item_id, seq_pos, from_end, n): each event's position from the user's newest (1 = newest)
    and the user's event count, over events before the end of `as_of` where timestamps exist."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if as_of:
        end = dt.datetime.fromisoformat(as_of).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
        interactions = interactions.where(F.col("timestamp").isNull() | (F.col("timestamp") < F.lit(end)))
    w = Window.partitionBy("user_id")
    return interactions.select("user_id", "item_id", "seq_pos",
                               F.row_number().over(w.orderBy(F.col("seq_pos").desc())).alias("from_end"),
                               F.count("*").over(w).alias("n"))


def history_item_counts(interactions, splits, as_of: str | None, cold_share: float = 0.0, cold_seed: int = 0) -> dict:
    """{split: pandas Series item_id -> count}: how often each item occurs in the split's histories
    (`histories_df(interactions, split, as_of)`), for every split from ONE aggregation: events grouped by
    item, position from the end and user length, both capped where no split distinguishes further.
    cold_share > 0: withheld items' events are not counted (positions still come from the full sequences), so
    a popularity read by serving is a collaborative signal that never saw a withheld item, as the baselines'."""
    from pyspark.sql import functions as F

    cap = max(max(HELD_OUT[s] for s in splits) + 1, max(min_events(s) for s in splits))
    events = ranked_events(interactions, as_of)
    if cold_share > 0:
        events = events.where(~cold_item_col(F.col("item_id"), cold_share, cold_seed))
    grouped = events.groupBy(
        "item_id", F.least("from_end", F.lit(cap)).alias("from_end"), F.least("n", F.lit(cap)).alias("n")).count()
    counts = grouped.toPandas()
    out = {}
    for split in splits:
        keep = (counts["from_end"] > HELD_OUT[split]) & (counts["n"] >= min_events(split))
        out[split] = counts[keep].groupby("item_id")["count"].sum()
    return out


def heldout_targets(interactions, splits: tuple[str, ...] = ("test", "valid")):
    """-> (user_id, split, target): each evaluation split's held-out item, for users who have one."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("user_id")
    ranked = interactions.select("user_id", "item_id", "seq_pos",
                                 F.count("*").over(w).alias("n"),
                                 F.row_number().over(w.orderBy(F.col("seq_pos").desc())).alias("from_end"))
    parts = [ranked.where((F.col("from_end") == HELD_OUT[s]) & (F.col("n") >= min_events(s))).select(
        "user_id", F.lit(s).alias("split"), F.col("item_id").alias("target")) for s in splits]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def cold_item_col(item_col, share: float, seed: int):
    """Spark twin of genrec_model.data.splits.cold_item_mask: a boolean Column, True for withheld items."""
    from pyspark.sql import functions as F

    if share <= 0:
        return F.lit(False)
    digest = F.sha2(F.concat(F.lit(f"{seed}:"), item_col.cast("string")), 256)
    draw = F.conv(F.substring(digest, 1, 8), 16, 10).cast("double") / float(2 ** 32)
    return draw < F.lit(float(share))


def without_cold_items(interactions, share: float, seed: int):
    """Interactions minus every event with a withheld (cold) item."""
    return interactions if share <= 0 else interactions.where(~cold_item_col(interactions["item_id"], share, seed))
