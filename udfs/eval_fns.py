"""Spark transforms of the `evaluate` stage (DataFrame -> DataFrame, no I/O).

Targets come from udfs/split_fns.heldout_targets (leave-one-out, genrec_model/data/splits.py).
Metrics follow genrec_model/evaluation/metrics.py (one relevant item:
Recall@K = HR@K, NDCG@K = 1/log2(rank+1) inside the top K), averaged over every user with a
target, so a user with no list counts as a miss.

Segments (cold-start protocol, data.cold_item_share): every metric is reported per (model, split,
segment). `all` = every user with a target; with items withheld, also `warm` (the held-out item is not a
withheld item) and `cold` (it is one: an item no model saw an interaction with). Without withheld items
only `all` is written (warm would repeat it, cold would be empty); a segment without users has no rows.
Ranking is always over the whole catalog: segments only pick which users a metric averages over.
"""
from __future__ import annotations

SEGMENTS = ("all", "warm", "cold")
KEYS = ["model", "split", "segment"]


def target_segments(targets, share: float, seed: int):
    """(user_id, split, target) -> + segment: `cold` when the target is a withheld item (split_fns.cold_item_col),
    else `warm`."""
    from pyspark.sql import functions as F

    from udfs.split_fns import cold_item_col

    return targets.withColumn("segment", F.when(cold_item_col(F.col("target"), share, seed), F.lit("cold"))
                              .otherwise(F.lit("warm")))


def by_segment(df, segmented: bool):
    """Each row of df (with a `segment` column, or none when not segmented) once under `all` and, when
    segmented, once more under its own segment (rows with a null segment: under `all` only)."""
    from pyspark.sql import functions as F

    if not segmented:
        return df.withColumn("segment", F.lit("all"))
    return (df.withColumn("segment", F.explode(F.array(F.lit("all"), F.col("segment"))))
            .where(F.col("segment").isNotNull()))


def target_ranks(recs, targets):
    """-> (model, split, user_id, rank, is_fallback[, segment]): 1-based rank of the target, 0 when not
    listed; targets' segment column, when it has one, is carried along."""
    from pyspark.sql import functions as F

    models = recs.select("model", "split").distinct()
    expected = targets.join(models, on="split")
    found = recs.select("model", "split", "user_id", "is_fallback",
                        F.transform("recs", lambda r: r["item_id"]).alias("items"))
    joined = expected.join(found, on=["model", "split", "user_id"], how="left")
    rank = F.coalesce(F.expr("array_position(items, target)"), F.lit(0)).cast("int")
    extra = ["segment"] if "segment" in targets.columns else []
    return joined.select("model", "split", "user_id", rank.alias("rank"),
                         F.coalesce("is_fallback", F.lit(False)).alias("is_fallback"), *extra)


def ranking_metrics(ranks, ks: list[int]):
    """ranks with a segment column (by_segment) -> (model, split, segment, metric, k, value) for recall@k,
    ndcg@k, plus users and fallback_share."""
    from pyspark.sql import functions as F

    aggs = []
    for k in ks:
        inside = (F.col("rank") >= 1) & (F.col("rank") <= k)
        aggs.append(F.avg(F.when(inside, 1.0).otherwise(0.0)).alias(f"recall@{k}"))
        aggs.append(F.avg(F.when(inside, 1.0 / F.log2(F.col("rank") + 1.0)).otherwise(0.0)).alias(f"ndcg@{k}"))
    aggs.append(F.count("*").cast("double").alias("users@"))
    aggs.append(F.avg(F.col("is_fallback").cast("double")).alias("fallback_share@"))
    wide = ranks.groupBy(*KEYS).agg(*aggs)
    return _melt(wide, [c for c in wide.columns if "@" in c])


def cold_item_share(recs, k: int, share: float, seed: int):
    """recs with a segment column -> (model, split, segment, metric, k, value): `cold_item_share@k`, the share
    of the top-k slots holding a withheld item (how often a model recommends new items at all)."""
    from pyspark.sql import functions as F

    from udfs.split_fns import cold_item_col

    top = recs.select(*KEYS, F.explode(F.slice("recs", 1, k)).alias("r"))
    wide = top.groupBy(*KEYS).agg(
        F.avg(cold_item_col(F.col("r.item_id"), share, seed).cast("double")).alias(f"cold_item_share@{k}"))
    return _melt(wide, [f"cold_item_share@{k}"])


def within_list_length(recs, metrics):
    """Drop metrics@k past the longest list a (model, split) served (every segment): with 10-item lists
    R@20 = R@10 says nothing about the model."""
    from pyspark.sql import functions as F

    lengths = recs.groupBy("model", "split").agg(F.max(F.size("recs")).alias("_len"))
    return (metrics.join(lengths, on=["model", "split"], how="left")
            .where(F.col("k").isNull() | (F.col("k") <= F.col("_len"))).drop("_len"))


def category_level(catalog, level: int | None, max_levels: int = 8) -> int:
    """The category-path level that is each item's category (diversity.pick_category_level), with the
    distinct values per level counted in Spark."""
    from pyspark.sql import functions as F

    from genrec_model.serve.diversity import pick_category_level

    if level is not None:
        return pick_category_level([], level)
    row = catalog.select([F.countDistinct(F.try_element_at("categories", F.lit(d + 1))).alias(f"l{d}")
                          for d in range(max_levels)]).first()
    return pick_category_level([int(row[f"l{d}"]) for d in range(max_levels)])


def beyond_accuracy(recs, catalog, k: int, level: int = 0):
    """recs with a segment column -> (model, split, segment, metric, k, value): catalog coverage@k and
    intra-list category diversity@k.

    Diversity uses each item's category at `level` of its path: 1 - share of same-category pairs in a list
    (genrec_model.serve.diversity.intra_list_diversity is the numpy reference); lists without
    categories are left out, and no row is written when no list has any.
    """
    from pyspark.sql import functions as F

    n_items = catalog.count()
    top = recs.select(*KEYS, "user_id", F.explode(F.slice("recs", 1, k)).alias("r")).select(
        *KEYS, "user_id", F.col("r.item_id").alias("item_id"))
    coverage = top.groupBy(*KEYS).agg(
        (F.countDistinct("item_id") / F.lit(float(n_items))).alias(f"coverage@{k}"))
    cats = catalog.select("item_id", F.try_element_at("categories", F.lit(level + 1)).alias("cat")).where(F.col("cat").isNotNull())
    per_cat = top.join(cats, on="item_id").groupBy(*KEYS, "user_id", "cat").count()
    per_user = per_cat.groupBy(*KEYS, "user_id").agg(
        F.sum(F.col("count") * (F.col("count") - 1) / 2).alias("same"), F.sum("count").alias("n")).where("n >= 2")
    ild = per_user.groupBy(*KEYS).agg(
        F.avg(1.0 - F.col("same") / (F.col("n") * (F.col("n") - 1) / 2)).alias(f"intra_list_diversity@{k}"))
    return _melt(coverage, [f"coverage@{k}"]).unionByName(_melt(ild, [f"intra_list_diversity@{k}"]))


def _melt(wide, value_cols: list[str]):
    from pyspark.sql import functions as F

    rows = F.explode(F.array(*[F.struct(F.lit(c.split("@")[0]).alias("metric"),
                                        (F.lit(int(c.split("@")[1])) if c.split("@")[1] else F.lit(None))
                                        .cast("int").alias("k"),
                                        F.col(f"`{c}`").cast("double").alias("value")) for c in value_cols]))
    return wide.select(*KEYS, rows.alias("m")).select(*KEYS, "m.metric", "m.k", "m.value")
