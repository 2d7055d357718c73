"""embed is incremental; the partition functions give the same result through Spark as on pandas."""
import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from genrec_model.catalog.config import RQVAEConfig
from genrec_model.catalog.rqvae import freeze, train_rqvae
from genrec_model.config import load_config
from genrec_model.data.schemas import CATALOG, ITEM_EMBEDDINGS
from jobs.common import make_context, run_recorded
from jobs.embed import run as run_embed
from udfs.delta_store import spark_schema
from udfs.embed_fns import embed_items, get_encoder, make_embed_fn
from udfs.sids_fns import SEMANTIC_DDL, assign_semantic, make_assign_fn

pytestmark = pytest.mark.spark

ITEMS = [("a", "Hydrating face cream", "Acme", ["Skin"]), ("b", "Argan hair oil", None, ["Hair"]),
         ("c", "Nail polish, red", "Gloss", []), ("d", "Sunscreen SPF 50", "Sol", ["Skin", "Sun"])]


def _catalog(spark, rows):
    from genrec_model.data.ingest_rules import item_text_hash

    data = [(i, t, b, c, None, None, item_text_hash(t, b, c, None)) for i, t, b, c in rows]
    return spark.createDataFrame(data, spark_schema(CATALOG))


def test_embed_reembeds_only_new_and_changed_items(spark, tmp_path):
    cfg = load_config(None, ["data.dataset=t", "data.path=/unused", f"lakehouse.root={tmp_path}"])
    ctx = make_context("embed", cfg, spark)
    ctx.store.write(_catalog(spark, ITEMS), CATALOG)
    run_recorded(ctx, run_embed)
    assert ctx.counts["items_embedded"] == 4 and ctx.counts["items_unchanged"] == 0
    first = DeltaTable(ctx.store.path(ITEM_EMBEDDINGS)).to_pandas().set_index("item_id")

    changed = [ITEMS[0], ("b", "Argan hair oil 100ml", None, ["Hair"]), ITEMS[2], ITEMS[3],
               ("e", "Lip balm", "Acme", ["Lips"])]
    ctx.store.write(_catalog(spark, changed), CATALOG)
    again = make_context("embed", cfg, spark)
    run_recorded(again, run_embed)
    assert again.counts["items_embedded"] == 2 and again.counts["items_unchanged"] == 3  # b changed, e new
    second = DeltaTable(ctx.store.path(ITEM_EMBEDDINGS)).to_pandas().set_index("item_id")
    assert sorted(second.index) == ["a", "b", "c", "d", "e"]
    for item in "acd":  # untouched rows are carried over bit for bit
        assert np.array_equal(first.loc[item, "embedding"], second.loc[item, "embedding"])
        assert first.loc[item, "updated_at"] == second.loc[item, "updated_at"]
    assert not np.allclose(first.loc["b", "embedding"], second.loc["b", "embedding"])


def test_embed_partition_function_spark_matches_pandas(spark):
    from genrec_model.catalog.text_encoder import default_model_path

    catalog = _catalog(spark, ITEMS)
    now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    template = ["{title}", "Brand: {brand}", "Categories: {categories}"]
    args = (default_model_path(), 64, 8, template, ". ", "minilm", "th", now)
    through_spark = catalog.repartition(2).mapInPandas(make_embed_fn(*args), spark_schema(ITEM_EMBEDDINGS)).toPandas()
    direct = embed_items(catalog.toPandas(), get_encoder(default_model_path(), 64, 8, 1), template, ". ", "minilm",
                         "th", now)
    a = through_spark.set_index("item_id").sort_index()
    b = direct.set_index("item_id").sort_index()
    assert list(a.index) == list(b.index) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-5)
    assert (a["text_hash"] == b["text_hash"]).all()


def test_assign_partition_function_spark_matches_pandas(spark):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((64, 12)).astype(np.float32)
    cfg = dataclasses.replace(RQVAEConfig(), input_dim=12, hidden_dims=(16,), latent_dim=4, n_levels=2,
                              codebook_size=8, epochs=3, batch_size=32, kmeans_iters=5)
    frozen = freeze(train_rqvae(emb, cfg)[0])
    pdf = pd.DataFrame({"item_id": [f"i{k}" for k in range(64)], "embedding": list(emb)})
    direct = assign_semantic(pdf, frozen, None, 0, 16)
    df = spark.createDataFrame(pdf.assign(embedding=[e.tolist() for e in emb]), "item_id string, embedding array<float>")
    through_spark = df.repartition(3).mapInPandas(make_assign_fn(frozen, None, 0, 16), SEMANTIC_DDL).toPandas()
    got = through_spark.set_index("item_id").loc[pdf["item_id"], "semantic"]
    assert [list(x) for x in got] == [list(x) for x in direct["semantic"]]
    assert [list(x) for x in direct["semantic"]] == frozen.assign(emb).tolist()


@pytest.mark.spark
def test_quantizer_training_sample_is_bounded_seeded_and_partition_independent(spark):
    from udfs.sids_fns import training_sample_df

    rows = [(f"i{n}", [float(n), 1.0]) for n in range(500)]
    df = spark.createDataFrame(rows, "item_id string, embedding array<float>")
    a = {r["item_id"] for r in training_sample_df(df.repartition(7), 120, seed=3).collect()}
    b = {r["item_id"] for r in training_sample_df(df.repartition(2), 120, seed=3).collect()}
    c = {r["item_id"] for r in training_sample_df(df, 120, seed=4).collect()}
    assert len(a) == 120 and a == b and a != c
    assert training_sample_df(df, None, 0).count() == 500
