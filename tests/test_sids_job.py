"""The sids job across nights: an item that leaves the catalog keeps its reserved SID, so the next new
item never inherits its item token (docs/CONTRACTS.md), and readers see only the catalog's items."""
import pytest
from deltalake import DeltaTable

from genrec_model.config import load_config
from genrec_model.data.schemas import CATALOG, ITEM_SIDS
from jobs.common import make_context, run_recorded
from jobs.embed import run as run_embed
from jobs.sids import run as run_sids
from udfs.sequence_fns import issued_codes, item_table

pytestmark = pytest.mark.spark

TITLES = {"a": "Hydrating face cream", "b": "Argan hair oil", "c": "Red nail polish", "d": "Sunscreen SPF 50",
          "e": "Lip balm", "f": "Shampoo for dry hair", "g": "Eye liner black", "h": "Body lotion"}


def _catalog(spark, ids):
    from genrec_model.data.ingest_rules import item_text_hash
    from udfs.delta_store import spark_schema

    rows = [(i, TITLES[i], None, [], None, None, item_text_hash(TITLES[i], None, [], None)) for i in ids]
    return spark.createDataFrame(rows, spark_schema(CATALOG))


def _night(spark, cfg, ids):
    ctx = make_context("embed", cfg, spark)
    ctx.store.write(_catalog(spark, ids), CATALOG)
    run_recorded(ctx, run_embed)
    sids = make_context("sids", cfg, spark)
    run_recorded(sids, run_sids)
    return sids, DeltaTable(ctx.store.path(ITEM_SIDS)).to_pandas().set_index("item_id")


def test_retired_items_keep_their_sid_and_new_items_get_fresh_tokens(spark, tmp_path):
    cfg = load_config(None, ["data.dataset=t", "data.path=/unused", f"lakehouse.root={tmp_path}/lh",
                             f"artifacts.root={tmp_path}/art", "sids.scheme=hybrid", "sids.prefix_levels=1",
                             "sids.rqvae.codebook_size=2", "sids.rqvae.epochs=3", "sids.rqvae.n_levels=2",
                             "sids.rqvae.hidden_dims=[16]", "sids.rqvae.latent_dim=4"])
    _, first = _night(spark, cfg, list("abcdefg"))
    top = first["codes"].map(lambda c: int(c[-1])).idxmax()  # the item holding the largest item token
    tonight = [i for i in "abcdefg" if i != top] + ["h"]
    ctx, second = _night(spark, cfg, tonight)
    assert ctx.counts["items_retired_reserved"] == 1 and ctx.counts["items_new_codes"] == 1
    assert list(second.loc[top, "codes"]) == list(first.loc[top, "codes"])  # still reserved
    assert int(second.loc["h", "codes"][-1]) == int(first.loc[top, "codes"][-1]) + 1  # never reused
    assert second["sid"].is_unique
    for i in tonight[:-1]:
        assert list(second.loc[i, "codes"]) == list(first.loc[i, "codes"])  # stable across nights
    items = item_table(ctx.read(ITEM_SIDS), ctx.read(CATALOG))
    assert sorted(items["item_id"]) == sorted(tonight)  # readers see the catalog's items
    assert len(issued_codes(ctx.read(ITEM_SIDS))) == 8  # the vocabulary covers every issued token
