"""Embedding throughput: the Spark `embed` partition function vs SentenceTransformer.encode,
same model, same texts, same machine, one process. Prints items/s and the ratio (goal >= 1.0).

    python benchmarks/embed_bench.py [--n 4000] [--data ../shared/data/amazon2014-beauty]
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def load_titles(data_dir: str, n: int) -> pd.DataFrame:
    df = pd.read_csv(os.path.join(data_dir, "items_asin_title.tsv"), sep="\t", quoting=3, keep_default_na=False)
    df = df.head(n)
    return pd.DataFrame({"item_id": df["asin"], "title": df["title"].map(html.unescape), "brand": None,
                         "categories": [[] for _ in range(len(df))], "description": None, "price": None,
                         "text_hash": "h"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/amazon2014-beauty")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from genrec_model.catalog.config import EmbedConfig
    from genrec_model.catalog.text_encoder import default_model_path, render_text
    from genrec_model.config import SparkConfig
    from genrec_model.data.schemas import CATALOG, ITEM_EMBEDDINGS
    from udfs.delta_store import spark_schema
    from udfs.embed_fns import make_embed_fn
    from udfs.session import build_spark

    catalog = load_titles(args.data, args.n)
    ecfg = EmbedConfig(batch_size=args.batch_size)
    texts = [render_text(r, list(ecfg.template), ecfg.separator) for r in catalog.to_dict("records")]
    path = default_model_path()

    torch.set_num_threads(args.cores)
    st = SentenceTransformer(path, device="cpu")
    st.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    t0 = time.perf_counter()
    ref = st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
    st_rate = len(texts) / (time.perf_counter() - t0)

    spark = build_spark(SparkConfig(master=f"local[{args.cores}]", shuffle_partitions=args.cores), "embed-bench")
    df = spark.createDataFrame(catalog, spark_schema(CATALOG)).repartition(args.cores).cache()
    df.count()
    fn = make_embed_fn(path, ecfg.max_length, ecfg.batch_size, list(ecfg.template), ecfg.separator, "minilm", "t",
                       dt.datetime.now(dt.timezone.utc))
    df.limit(args.cores * 8).mapInPandas(fn, spark_schema(ITEM_EMBEDDINGS)).count()  # load models in workers
    t0 = time.perf_counter()
    out = df.mapInPandas(fn, spark_schema(ITEM_EMBEDDINGS)).select("item_id", "embedding").toPandas()
    spark_rate = len(out) / (time.perf_counter() - t0)

    got = np.stack(out.set_index("item_id").loc[catalog["item_id"], "embedding"].to_numpy())
    cos = float((got * ref).sum(1).min())
    print(f"items={len(texts)} cores={args.cores} sentence_transformers_items_per_s={st_rate:.1f} "
          f"spark_embed_items_per_s={spark_rate:.1f} min_cosine_vs_st={cos:.6f}")
    print(f"ratio_spark_vs_st={spark_rate / st_rate:.2f}")
    spark.stop()


if __name__ == "__main__":
    main()
