"""The pandas bodies of the readers (udfs/ingest_readers.py) and the ingest rules they feed, without Spark:
LC-Rec JSON and P5 sequence lines, including the malformed records ingest must count and reject."""
import json

import pandas as pd

from genrec_model.data.ingest_rules import RAW_ITEM_COLUMNS, clean_interactions, clean_items
from udfs.ingest_readers import (
    CATEGORY_SEPARATORS,
    HAS_TIMESTAMPS,
    explode_lcrec_interactions,
    explode_lcrec_items,
    explode_sequence_lines,
)

ITEMS = {"0": {"title": "Relay &amp; Capacitor Kit", "brand": "Supco", "description": "Hard start.",
               "categories": "Industrial & Scientific,Electrical, Capacitors"},
         "1": {"title": "Beaker", "brand": "", "categories": ["Lab", "Glass"], "price": 9.5},
         "2": "not a mapping"}
INTER = {"u1": [0, 1, 0], "u2": [], "u3": "1"}


def _frame(text: str) -> list[pd.DataFrame]:
    return [pd.DataFrame({"value": [text]})]


def test_lcrec_items_to_catalog_rows():
    raw = pd.concat(explode_lcrec_items(_frame(json.dumps(ITEMS))), ignore_index=True)
    assert list(raw.columns) == RAW_ITEM_COLUMNS and raw["src_order"].tolist() == [0, 1, 2]
    assert raw.loc[1, "categories"] == "Lab,Glass" and raw.loc[1, "price"] == "9.5"  # lists joined, text kept
    assert raw.loc[2, ["title", "brand", "categories"]].isna().all()  # a non-mapping record keeps only its id
    cat = clean_items(raw, CATEGORY_SEPARATORS["lcrec"])
    assert cat["reason"].isna().all()
    assert cat.loc[0, "title"] == "Relay & Capacitor Kit" and cat.loc[0, "brand"] == "Supco"
    assert cat.loc[0, "categories"] == ["Industrial & Scientific", "Electrical", "Capacitors"]
    assert cat.loc[1, "brand"] is None and cat.loc[1, "categories"] == ["Lab", "Glass"] and cat.loc[1, "price"] == 9.5
    assert cat.loc[2, "title"] == "" and cat.loc[2, "categories"] == []


def test_lcrec_interactions_keep_order_and_count_empty_histories():
    raw = pd.concat(explode_lcrec_interactions(_frame(json.dumps(INTER))), ignore_index=True)
    rows = list(zip(raw["user_id"], raw["item_id"], raw["event_order"]))
    assert rows == [("u1", "0", 0), ("u1", "1", 1), ("u1", "0", 2), ("u2", None, 0), ("u3", None, 0)]
    clean = clean_interactions(raw, HAS_TIMESTAMPS["lcrec"], 0, 4102444800)
    assert clean["reason"].tolist() == [None, None, None, "null_item_id", "null_item_id"]
    assert clean["timestamp"].isna().all()


def test_p5_sequence_lines():
    lines = pd.DataFrame({"value": ["U1 A B  C", "U2", "", "U3 A"]})
    raw = pd.concat(explode_sequence_lines([lines]), ignore_index=True)
    assert list(zip(raw["user_id"], raw["item_id"], raw["event_order"])) == [
        ("U1", "A", 0), ("U1", "B", 1), ("U1", "C", 2), ("U2", None, 0), (None, None, 0), ("U3", "A", 0)]
    reasons = clean_interactions(raw, HAS_TIMESTAMPS["amazon_p5"], 0, 4102444800)["reason"].tolist()
    assert reasons == [None, None, None, "null_item_id", "null_user_id", None]
