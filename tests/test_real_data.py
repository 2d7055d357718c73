"""The production ingest (readers in udfs/ingest_readers.py + the rules of genrec_model/data/ingest_rules.py,
run by jobs/ingest.py) on the real datasets: counts as ../shared/README.md states them, no rejects, and
content checked against the raw files read independently here.

Marked `shared_data`: the three ../shared datasets come through the `shared_data` fixture (root:
GENREC_SHARED_DATA) and skip without it; MovieLens-100k is read out of the recbole wheel in data/ (what
run_demo.sh uses) and skips only when that wheel is absent.
"""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from genrec_model.config import load_config
from genrec_model.data.schemas import CATALOG, INTERACTIONS, REJECTS

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
WHEEL = REPO / "data" / "recbole-1.2.1-py3-none-any.whl"

pytestmark = [pytest.mark.shared_data, pytest.mark.spark]

_RUNS: dict[str, Ingested] = {}


class Ingested:
    def __init__(self, ctx):
        self.counts = dict(ctx.counts)
        self.catalog = DeltaTable(ctx.store.path(CATALOG)).to_pandas().set_index("item_id", drop=False)
        self.interactions = DeltaTable(ctx.store.path(INTERACTIONS)).to_pandas().sort_values(
            ["user_id", "seq_pos"], kind="stable").reset_index(drop=True)
        self.rejects = DeltaTable(ctx.store.path(REJECTS)).to_pandas()

    def histories(self) -> dict[str, list[str]]:
        return {u: g["item_id"].tolist() for u, g in self.interactions.groupby("user_id", sort=False)}


def _ingest(request, conf: str, path: Path) -> Ingested:
    """jobs/ingest.py with the dataset's shipped config, data.path pointed at `path` (once per module).
    Spark is started only here, after the data was found: a skip costs no Spark session."""
    if conf not in _RUNS:
        from jobs.common import make_context, run_recorded
        from jobs.ingest import run as run_ingest

        spark = request.getfixturevalue("spark")
        root = request.getfixturevalue("tmp_path_factory").mktemp(conf)
        cfg = load_config(CONF / f"{conf}.yaml", [f"data.path={path}", f"lakehouse.root={root / 'lake'}",
                                                 f"artifacts.root={root / 'art'}", "run_date=2026-11-24"])
        ctx = make_context("ingest", cfg, spark)
        run_recorded(ctx, run_ingest)
        _RUNS[conf] = Ingested(ctx)
    return _RUNS[conf]


def _dataset(shared_data: Path, name: str) -> Path:
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"{name} not found under {shared_data}")
    return folder


def _assert_counts(got: Ingested, users: int, items: int, interactions: int) -> None:
    c = got.counts
    assert (c["raw_items"], c["catalog"], c["item_rejects"]) == (items, items, 0)
    assert (c["raw_interactions"], c["interactions"], c["interaction_rejects"]) == (interactions, interactions, 0)
    assert len(got.rejects) == 0
    assert len(got.catalog) == got.catalog["item_id"].nunique() == items
    assert len(got.interactions) == interactions and got.interactions["user_id"].nunique() == users
    assert set(got.interactions["item_id"]) <= set(got.catalog["item_id"])
    # seq_pos numbers each user's events 0..n-1
    pos = got.interactions.groupby("user_id")["seq_pos"]
    assert (pos.min() == 0).all() and (pos.max() + 1 == pos.size()).all()


# --- Amazon 2014 Beauty (P5/TIGER format: amazon_p5) ---------------------------------------------------

def test_beauty_counts(shared_data, request):
    got = _ingest(request, "beauty", _dataset(shared_data, "amazon2014-beauty"))
    _assert_counts(got, users=22363, items=12101, interactions=198502)
    assert got.interactions["timestamp"].isna().all()  # P5 files have no timestamps: order is the line's


def test_beauty_histories_keep_file_order_and_titles_are_unescaped(shared_data, request):
    folder = _dataset(shared_data, "amazon2014-beauty")
    got = _ingest(request, "beauty", folder)
    lines = [line.split() for line in (folder / "user_sequence.txt").read_text().splitlines()]
    assert got.histories() == {parts[0]: parts[1:] for parts in lines}
    assert min(len(parts) - 1 for parts in lines) >= 5  # 5-core: every user has a validation and a test item

    with open(folder / "items_asin_title.tsv", newline="") as f:
        raw = {row["asin"]: row["title"] or "" for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    titles = got.catalog["title"]
    escaped = [asin for asin, t in raw.items() if html.unescape(t) != t]
    assert len(escaped) > 0 and (titles == "").sum() == 7  # README: 7 empty titles, entities such as &#9733;
    for asin in escaped:
        assert titles[asin] == " ".join(html.unescape(raw[asin]).split())
    assert "\u2605" in titles["B00KD73PBQ"] and "&#9733;" not in titles["B00KD73PBQ"]
    assert not titles.str.contains(r"&(?:#\d+|#x[0-9a-fA-F]+|amp|quot|lt|gt);").any()


def test_beauty_histories_match_the_sasrec_benchmark_loader(shared_data, request):
    """benchmarks/sasrec_beauty.py reads user_sequence.txt itself: it must see what production ingests."""
    from benchmarks.sasrec_beauty import load_user_sequences
    from genrec_model.data.splits import split_sequence

    folder = _dataset(shared_data, "amazon2014-beauty")
    got = _ingest(request, "beauty", folder)
    seqs, items = load_user_sequences(folder / "user_sequence.txt")
    bench = sorted(tuple(items[i] for i in s) for s in seqs)
    assert bench == sorted(tuple(h) for h in got.histories().values())
    parts = [split_sequence(np.asarray(s), 50) for s in seqs]
    assert all(valid is not None and test is not None for _, valid, test in parts)


# --- Amazon 2018 Industrial & Scientific (LC-Rec format: lcrec) ----------------------------------------

def test_scientific_counts(shared_data, request):
    got = _ingest(request, "scientific", _dataset(shared_data, "amazon-scientific"))
    _assert_counts(got, users=8317, items=4344, interactions=58492)


def test_scientific_items_keep_brand_categories_and_description(shared_data, request):
    folder = _dataset(shared_data, "amazon-scientific")
    got = _ingest(request, "scientific", folder)
    meta = json.loads((folder / "Scientific.item.json").read_text())
    sequences = json.loads((folder / "Scientific.inter.json").read_text())
    assert got.histories() == {u: [str(i) for i in seq] for u, seq in sequences.items()}
    cat = got.catalog
    has_brand = cat["brand"].notna()
    has_categories = cat["categories"].map(len) > 0
    assert has_brand.sum() == sum(1 for m in meta.values() if (m.get("brand") or "").strip())
    assert has_categories.sum() == sum(1 for m in meta.values() if (m.get("categories") or "").strip())
    assert has_brand.mean() > 0.9 and has_categories.mean() > 0.9
    for key in ("0", "1", str(len(meta) - 1)):
        m, row = meta[key], cat.loc[key]
        assert row["brand"] == " ".join(html.unescape(m["brand"]).split())
        assert list(row["categories"]) == [c.strip() for c in html.unescape(m["categories"]).split(",") if c.strip()]
        assert row["title"] == " ".join(html.unescape(m["title"]).split())
        assert row["description"] == " ".join(html.unescape(m["description"]).split())[:4000]
    assert list(cat.loc["0", "categories"])[0] == "Industrial & Scientific"


# --- MovieLens latest-small (movielens_csv) ------------------------------------------------------------

def test_movielens_counts(shared_data, request):
    got = _ingest(request, "movielens", _dataset(shared_data, "movielens-latest-small"))
    _assert_counts(got, users=610, items=9742, interactions=100836)


def test_movielens_timestamps_titles_and_genres(shared_data, request):
    folder = _dataset(shared_data, "movielens-latest-small")
    got = _ingest(request, "movielens", folder)
    ratings = pd.read_csv(folder / "ratings.csv")
    inter = got.interactions
    ts = inter["timestamp"]
    assert ts.notna().all()
    assert ts.min() == pd.Timestamp(ratings["timestamp"].min(), unit="s", tz="UTC")
    assert ts.max() == pd.Timestamp(ratings["timestamp"].max(), unit="s", tz="UTC")
    assert pd.Timestamp("1996-01-01", tz="UTC") <= ts.min() and ts.max() < pd.Timestamp("2019-01-01", tz="UTC")
    assert (inter.groupby("user_id")["timestamp"].diff().dropna() >= pd.Timedelta(0)).all()  # seq_pos follows time
    assert sorted(inter["rating"].unique()) == sorted(ratings["rating"].unique())
    movies = pd.read_csv(folder / "movies.csv", dtype=str).set_index("movieId")
    cat = got.catalog.loc[movies.index]
    assert (cat["title"] == movies["title"].str.split().str.join(" ")).all()  # quoted titles with commas intact
    genres = movies["genres"].map(lambda g: [x for x in g.split("|") if x != "(no genres listed)"])
    assert [list(c) for c in cat["categories"]] == genres.tolist()
    assert list(got.catalog.loc["1", "categories"])[:2] == ["Adventure", "Animation"]


# --- MovieLens-100k atomic files inside the recbole wheel (ml100k_atomic; the demo's data) --------------

@pytest.fixture
def recbole_wheel():
    if not WHEEL.is_file():
        pytest.skip(f"{WHEEL.name} not in data/ (scripts/setup_env.sh fetches it: pip download recbole==1.2.1 "
                    f"--no-deps -d data/)")
    return WHEEL


def test_ml100k_wheel_counts_and_content(recbole_wheel, request):
    import zipfile

    got = _ingest(request, "local", recbole_wheel)
    _assert_counts(got, users=943, items=1682, interactions=100000)
    with zipfile.ZipFile(recbole_wheel) as z:
        lines = z.read("recbole/dataset_example/ml-100k/ml-100k.inter").decode().splitlines()
    stamps = np.array([int(line.split("\t")[3]) for line in lines[1:]])
    ts = got.interactions["timestamp"]
    assert ts.min() == pd.Timestamp(stamps.min(), unit="s", tz="UTC") >= pd.Timestamp("1997-09-01", tz="UTC")
    assert ts.max() == pd.Timestamp(stamps.max(), unit="s", tz="UTC") < pd.Timestamp("1998-05-01", tz="UTC")
    assert set(got.interactions["rating"]) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert got.catalog.loc["1", "title"] == "Toy Story (1995)"  # title + (release_year)
    assert list(got.catalog.loc["1", "categories"]) == ["Animation", "Children's", "Comedy"]
