"""Row-level cleaning and validation of raw catalog and interaction rows (pandas, no Spark).

Each function takes a frame of raw string columns and returns the cleaned columns
plus `reason` (None for an accepted row) and `record` (the raw row as JSON, kept
so a rejected row can be inspected). Cross-row rules (duplicates, unknown items)
need the whole data set and live in the Spark transforms.
"""
from __future__ import annotations

import hashlib
import html
import json
import re

import numpy as np
import pandas as pd

RAW_ITEM_COLUMNS = ["item_id", "title", "brand", "categories", "description", "price", "src_order"]
RAW_INTERACTION_COLUMNS = ["user_id", "item_id", "timestamp", "rating", "event_order"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 and C1 controls (not \t \n \r)
_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Lone surrogates (from broken decoding upstream) cannot be encoded as UTF-8: Arrow would fail
# the whole Spark task on them, so they become U+FFFD before anything leaves a rule.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
MAX_ID_CHARS = 256  # longer ids are refused (bad_*_id), not truncated: truncation could merge ids


def clean_text(value, unescape: bool, max_chars: int) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    if unescape:
        text = html.unescape(text)
    text = _SPACES.sub(" ", _CONTROL.sub(" ", _SURROGATE.sub("\ufffd", text))).strip()
    return text[:max_chars] if text else None


def clean_id(value) -> str | None:
    """Stripped id text (surrogates replaced so it stays encodable); None when absent or blank."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return _SURROGATE.sub("\ufffd", text) or None


def bad_id(value) -> bool:
    """A present id that cannot be a key: control characters, lone surrogates, or too long."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    text = str(value).strip()
    return bool(text) and (len(text) > MAX_ID_CHARS or _BAD_ID_CHARS.search(text) is not None)


def _finite(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    return numbers.where(np.isfinite(numbers))


def item_text_hash(title: str, brand: str | None, categories: list[str], description: str | None) -> str:
    blob = json.dumps([title, brand, list(categories), description], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _records(raw: pd.DataFrame, columns: list[str]) -> list[str]:
    rows = raw[columns].astype(object).where(raw[columns].notna(), None)
    return [_SURROGATE.sub("\ufffd", json.dumps(dict(zip(columns, r)), ensure_ascii=False, default=str))
            for r in rows.itertuples(False)]


def clean_items(raw: pd.DataFrame, category_sep: str, unescape: bool = True, max_chars: int = 4000) -> pd.DataFrame:
    """Raw item rows -> catalog columns + src_order + reason + record."""
    out = pd.DataFrame({"item_id": raw["item_id"].map(clean_id)})
    out["title"] = raw["title"].map(lambda v: clean_text(v, unescape, max_chars) or "")
    out["brand"] = raw["brand"].map(lambda v: clean_text(v, unescape, max_chars))
    out["categories"] = raw["categories"].map(lambda v: _split_categories(v, category_sep, unescape, max_chars))
    out["description"] = raw["description"].map(lambda v: clean_text(v, unescape, max_chars))
    out["price"] = _finite(raw["price"].map(_price_text))
    out["text_hash"] = [item_text_hash(t, b, c, d) for t, b, c, d in
                        zip(out["title"], out["brand"], out["categories"], out["description"])]
    out["src_order"] = raw["src_order"].astype("int64").to_numpy()
    reason = np.full(len(raw), None, dtype=object)
    reason[raw["item_id"].map(bad_id).to_numpy(dtype=bool)] = "bad_item_id"
    reason[out["item_id"].isna().to_numpy()] = "null_item_id"
    out["reason"] = reason
    out["record"] = _records(raw, RAW_ITEM_COLUMNS[:-1])
    return out


def _split_categories(value, sep: str, unescape: bool, max_chars: int) -> list[str]:
    text = clean_text(value, unescape, max_chars)
    if not text:
        return []
    parts = [p.strip() for p in (text.split(sep) if sep else [text])]
    return [p for p in parts if p and p != "(no genres listed)"]


def _price_text(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value).strip().lstrip("$").replace(",", "") or None


def _utc_micros(seconds: pd.Series) -> pd.Series:
    """Unix seconds (NaN = missing) -> datetime64[us, UTC]. Converted by hand: pandas' unit
    conversion raises on a floating-point overflow flag left set by other code in a Spark worker."""
    vals = seconds.to_numpy(dtype="float64")
    valid = ~np.isnan(vals)
    micros = np.zeros(len(vals), dtype="int64")
    with np.errstate(all="ignore"):
        micros[valid] = np.round(vals[valid] * 1e6).astype("int64")
    return pd.Series(micros.view("datetime64[us]"), index=seconds.index).where(valid).dt.tz_localize("UTC")


def clean_interactions(raw: pd.DataFrame, require_timestamp: bool, min_ts: int, max_ts: int) -> pd.DataFrame:
    """Raw interaction rows -> user_id, item_id, timestamp (UTC), rating, event_order + reason + record.

    Timestamps are unix seconds (int or float text) or ISO-8601 text.
    """
    out = pd.DataFrame({"user_id": raw["user_id"].map(clean_id), "item_id": raw["item_id"].map(clean_id)})
    ts_raw = raw["timestamp"].map(clean_id)
    seconds = pd.to_numeric(ts_raw, errors="coerce").astype("float64")
    overflow = seconds.isna() & ts_raw.map(lambda t: t is not None and _NUMBER.fullmatch(t) is not None).astype(bool)
    seconds[overflow] = ts_raw[overflow].map(float)  # e.g. 1e400: a number, just out of range (inf)
    need_iso = seconds.isna() & ts_raw.notna()
    if need_iso.any():
        iso = pd.to_datetime(ts_raw[need_iso], utc=True, errors="coerce", format="ISO8601")
        seconds[need_iso] = (iso - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    in_range = seconds.between(min_ts, max_ts)
    out["timestamp"] = _utc_micros(seconds.where(in_range))
    out["rating"] = _finite(raw["rating"])
    out["event_order"] = raw["event_order"].astype("int64").to_numpy()
    reason = np.full(len(raw), None, dtype=object)
    has_ts = ts_raw.notna().to_numpy()
    parsed = seconds.notna().to_numpy()
    reason[has_ts & parsed & ~in_range.to_numpy()] = "timestamp_out_of_range"
    reason[has_ts & ~parsed] = "bad_timestamp"
    if require_timestamp:
        reason[~has_ts] = "missing_timestamp"
    reason[raw["item_id"].map(bad_id).to_numpy(dtype=bool)] = "bad_item_id"
    reason[raw["user_id"].map(bad_id).to_numpy(dtype=bool)] = "bad_user_id"
    reason[out["item_id"].isna().to_numpy()] = "null_item_id"
    reason[out["user_id"].isna().to_numpy()] = "null_user_id"
    out["reason"] = reason
    out["record"] = _records(raw, RAW_INTERACTION_COLUMNS[:-1])
    return out
