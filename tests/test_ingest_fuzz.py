"""Property tests of the row-level ingest rules on hostile input (pure pandas, no Spark):
no crash, one output row per input row, every bad row carries a reason, accepted rows fit the
table schema. One Spark-level test runs the real ingest job on a generated dirty batch."""
import csv
import io
import math
import unicodedata

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrec_model.data.ingest_rules import (
    MAX_ID_CHARS,
    RAW_INTERACTION_COLUMNS,
    RAW_ITEM_COLUMNS,
    clean_interactions,
    clean_items,
)
from genrec_model.data.schemas import CATALOG

MIN_TS, MAX_TS = 0, 4102444800
FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

_nasty_chars = st.sampled_from(["\x00", "\x07", "\x1b", "\x7f", "\ud800", "\udfff", "\u200b", "\ufeff", "\n",
                                "\t", "\r", "&amp;", "&#9733;", "&#xD800;", "é", "😀", ",", '"', "|", " "])
_huge = st.builds(lambda s, n: s * n, st.sampled_from(["x", "é", "\ud83d", "&lt;", " "]),
                  st.integers(10_000, 200_000))
_text = st.one_of(st.none(), st.just(""), st.just("   "), st.text(max_size=30),
                  st.lists(_nasty_chars, max_size=8).map("".join), _huge, st.just(float("nan")))
_ids = st.one_of(st.sampled_from(["1", "2", " 2 ", "a", "A", "x" * (MAX_ID_CHARS + 1), "ok\x00id", "\ud800",
                                  "", " ", None]), st.text(max_size=12))
_ts = st.one_of(
    st.none(), st.just(""), st.just("not-a-time"), st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10",
                                                                   "2000-07-30T18:00:00Z", "9999-12-31T00:00:00",
                                                                   "1969-12-31", "2024-02-30", "+5", "1_000"]),
    st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(MIN_TS, MAX_TS).map(str), st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=12))
_num = st.one_of(st.none(), st.just(""), st.sampled_from(["$1,299.00", "nan", "inf", "-0", "1e309", "4.5"]),
                 st.floats().map(str), st.text(max_size=8))


def _frame(rows, columns):
    df = pd.DataFrame(rows, columns=columns[:-1], dtype=object)
    df[columns[-1]] = range(len(df))
    return df


item_rows = st.lists(st.tuples(_ids, _text, _text, _text, _text, _num), max_size=12).map(
    lambda rows: _frame(rows, RAW_ITEM_COLUMNS))
inter_rows = st.lists(st.tuples(_ids, _ids, _ts, _num), max_size=12).map(
    lambda rows: _frame(rows, RAW_INTERACTION_COLUMNS))


def _clean_chars(v: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in v)


def _valid_id(v) -> bool:
    return isinstance(v, str) and v == v.strip() and 0 < len(v) <= MAX_ID_CHARS and _clean_chars(v)


def _utf8(values) -> None:
    for v in values:
        if isinstance(v, str):
            v.encode("utf-8")  # lone surrogates would fail Arrow's UTF-8 conversion in the Spark worker


@FUZZ
@given(item_rows, st.booleans())
def test_items_fuzz(raw, unescape):
    out = clean_items(raw, "|", unescape=unescape, max_chars=4000)
    assert len(out) == len(raw)
    assert out["src_order"].tolist() == raw["src_order"].tolist()
    for raw_id, reason in zip(raw["item_id"], out["reason"]):
        bad = not (isinstance(raw_id, str) and raw_id.strip())
        if bad:
            assert reason == "null_item_id"
        elif not _valid_id(raw_id.strip()):
            assert reason == "bad_item_id"
    accepted = out[out["reason"].isna()]
    assert all(_valid_id(v) for v in accepted["item_id"])
    table = pa.Table.from_pandas(accepted[CATALOG.columns], schema=CATALOG.schema, preserve_index=False)
    for f in CATALOG.schema:
        if not f.nullable:
            assert table.column(f.name).null_count == 0
    for col in ("title", "brand", "description"):
        assert all(v is None or (len(v) <= 4000 and _clean_chars(v) and v == v.strip()) for v in accepted[col])
    assert all(math.isfinite(p) for p in accepted["price"].dropna())
    for col in ("title", "brand", "description", "record"):
        _utf8(out[col])
    _utf8(c for cats in out["categories"] for c in cats)


@FUZZ
@given(inter_rows, st.booleans())
def test_interactions_fuzz(raw, require_timestamp):
    out = clean_interactions(raw, require_timestamp, MIN_TS, MAX_TS)
    assert len(out) == len(raw)
    assert out["event_order"].tolist() == raw["event_order"].tolist()
    for (_, r), reason in zip(raw.iterrows(), out["reason"]):
        if not (isinstance(r["user_id"], str) and r["user_id"].strip()):
            assert reason == "null_user_id"
        elif not (isinstance(r["item_id"], str) and r["item_id"].strip()):
            assert reason == "null_item_id"
        elif r["timestamp"] is None or (isinstance(r["timestamp"], str) and not r["timestamp"].strip()):
            assert (reason == "missing_timestamp") == require_timestamp or reason in ("bad_user_id", "bad_item_id")
        elif r["timestamp"] in ("not-a-time", "nan", "0x10", "2024-02-30", "1_000"):
            assert reason is not None
    assert set(out["reason"].dropna()) <= {"null_user_id", "null_item_id", "bad_user_id", "bad_item_id",
                                           "missing_timestamp", "bad_timestamp", "timestamp_out_of_range"}
    accepted = out[out["reason"].isna()]
    assert all(_valid_id(v) for v in accepted["user_id"]) and all(_valid_id(v) for v in accepted["item_id"])
    ts = accepted["timestamp"].dropna()
    assert ((ts >= pd.Timestamp(MIN_TS, unit="s", tz="UTC")) & (ts <= pd.Timestamp(MAX_TS, unit="s", tz="UTC"))).all()
    if require_timestamp:
        assert accepted["timestamp"].notna().all()
    assert all(math.isfinite(v) for v in accepted["rating"].dropna())
    pa.Table.from_pandas(accepted[["user_id", "item_id", "timestamp", "rating"]], preserve_index=False)
    _utf8(out["record"])


def test_huge_history_one_user():
    n = 200_000
    raw = pd.DataFrame({"user_id": ["u"] * n, "item_id": [str(i % 977) for i in range(n)],
                        "timestamp": [str(1_000_000 + i) for i in range(n)], "rating": ["4"] * n,
                        "event_order": range(n)}, dtype=object)
    raw.loc[7, "timestamp"] = "garbage"
    out = clean_interactions(raw, True, MIN_TS, MAX_TS)
    assert out["reason"].value_counts().to_dict() == {"bad_timestamp": 1}
    assert out["timestamp"].iloc[8] == pd.Timestamp(1_000_008, unit="s", tz="UTC")


def _dirty_movielens(seed: int = 7, n_items: int = 60, n_users: int = 40, long_user_events: int = 3000):
    """Generated MovieLens CSV bytes with every kind of bad row, and the reasons each should get."""
    import random

    rng = random.Random(seed)
    items, item_reasons = [["movieId", "title", "genres"]], []
    for i in range(n_items):
        items.append([str(i), f"Movie {i} &amp; {'é' * rng.randrange(3)}", "Drama|Comedy"])
    bad_items = [["", "no id", "Drama"], ["  ", "blank id", "Drama"], ["5", "duplicate of 5", "Drama"],
                 ["id\x01ctl", "control char id", "Drama"], ["L" * (MAX_ID_CHARS + 1), "too long id", "Drama"]]
    item_reasons += ["null_item_id", "null_item_id", "duplicate_item_id", "bad_item_id", "bad_item_id"]
    items += bad_items
    items.append(["900", "T" * 150_000, "Drama"])  # huge text: accepted, truncated
    items.append(["901", "BROKEN_UTF8", ""])         # invalid UTF-8 bytes in the title: accepted as U+FFFD
    rng.shuffle(items[1:])

    ratings, inter_reasons = [["userId", "movieId", "rating", "timestamp"]], []
    good = 0
    for u in range(n_users):
        for _ in range(rng.randrange(1, 6)):
            ratings.append([f"u{u}", str(rng.randrange(n_items)), "4.0", str(900_000_000 + good)])
            good += 1
    for k in range(long_user_events):  # one huge history
        ratings.append(["heavy", str(k % n_items), "3.0", str(1_000_000_000 + k)])
        good += 1
    planted = [(["", "1", "4", "964982703"], "null_user_id"), (["u1", "", "4", "964982703"], "null_item_id"),
               (["u1", "999999", "4", "964982703"], "unknown_item"),
               (["u1", "5", "4", "964982703"], None), (["u1", "5", "4", "964982703"], "duplicate_interaction"),
               (["u2", "1", "4", "not-a-time"], "bad_timestamp"), (["u2", "1", "4", ""], "missing_timestamp"),
               (["u2", "1", "4", "99999999999"], "timestamp_out_of_range"),
               (["u2", "1", "4", "-5"], "timestamp_out_of_range"), (["u2", "1", "4", "1e400"], "timestamp_out_of_range"),
               (["u2", "1", "nan", "2000-07-30T18:00:00Z"], None), (["u\x02", "1", "4", "964982703"], "bad_user_id"),
               (["u3", "id\x01ctl", "4", "964982703"], "bad_item_id"),
               (["u3", "901", "inf", "964982704"], None)]
    for row, reason in planted:
        ratings.append(row)
        if reason:
            inter_reasons.append(reason)
        else:
            good += 1

    def to_bytes(rows):
        buf = io.StringIO()
        csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
        return buf.getvalue().encode("utf-8").replace(b"BROKEN_UTF8", b"bad \xff\xfe bytes")

    n_items_in = len(items) - 1
    return ({"movies.csv": to_bytes(items), "ratings.csv": to_bytes(ratings)},
            {"raw_items": n_items_in, "catalog": n_items_in - len(item_reasons), "item_reasons": item_reasons,
             "raw_interactions": len(ratings) - 1, "interactions": good, "inter_reasons": inter_reasons})


@pytest.mark.spark
def test_ingest_job_on_generated_dirty_batch(spark, tmp_path):
    from collections import Counter

    from deltalake import DeltaTable

    from genrec_model.config import load_config
    from genrec_model.data.schemas import INTERACTIONS, REJECTS
    from jobs.common import make_context, run_recorded
    from jobs.ingest import run as run_ingest

    files, want = _dirty_movielens()
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, data in files.items():
        (raw / name).write_bytes(data)
    cfg = load_config(None, [f"data.path={raw}", f"lakehouse.root={tmp_path / 'lake'}",
                             f"artifacts.root={tmp_path / 'art'}", "run_date=2024-05-01", "data.input_partitions=3",
                             "data.dataset=dirty", "data.format=movielens_csv"])
    ctx = make_context("ingest", cfg, spark)
    run_recorded(ctx, run_ingest)
    c = ctx.counts
    assert (c["raw_items"], c["catalog"], c["item_rejects"]) == (
        want["raw_items"], want["catalog"], len(want["item_reasons"]))
    assert (c["raw_interactions"], c["interactions"], c["interaction_rejects"]) == (
        want["raw_interactions"], want["interactions"], len(want["inter_reasons"]))
    rejects = DeltaTable(ctx.store.path(REJECTS)).to_pandas()
    got = Counter(zip(rejects["source"], rejects["reason"]))
    assert got == Counter([("catalog", r) for r in want["item_reasons"]] +
                          [("interactions", r) for r in want["inter_reasons"]])
    assert rejects["record"].notna().all() and rejects["reason"].notna().all()
    catalog = DeltaTable(ctx.store.path(CATALOG)).to_pandas().set_index("item_id")
    assert len(catalog.loc["900", "title"]) == 4000 and "\ufffd" in catalog.loc["901", "title"]
    inter = DeltaTable(ctx.store.path(INTERACTIONS)).to_pandas()
    heavy = inter[inter["user_id"] == "heavy"].sort_values("seq_pos")
    assert heavy["seq_pos"].tolist() == list(range(3000)) and heavy["timestamp"].is_monotonic_increasing
    assert not inter.duplicated(["user_id", "seq_pos"]).any()
    assert inter["rating"].dropna().map(math.isfinite).all()
