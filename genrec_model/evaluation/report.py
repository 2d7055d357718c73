"""Self-contained HTML evaluation report (tables + matplotlib PNGs, also embedded inline).

Metrics come in long form: a pandas DataFrame with columns
model, split, metric, k, value, dataset (metric is e.g. "recall" or "ndcg") and optionally segment
(all | warm | cold, the cold-start protocol; missing = all). Published figures are for all users, so
they are drawn beside the `all` segment only; plots show one panel row per segment present.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

METRIC_COLUMNS = ("model", "split", "metric", "k", "value", "dataset")
SEGMENT_ORDER = ("all", "warm", "cold")

# Published figures (not measured here), per dataset (`data.dataset`): drawn only beside measurements of
# that same dataset and split. Beauty: Amazon 2014 Beauty 5-core, leave-one-out, full ranking, unfiltered
# lists. TIGER: Rajput et al. 2023; SASRec-CE: RecBole SASRec with cross-entropy loss; LC-Rec: Zheng et
# al. 2024 (7B LLM). Keys: "<metric>@<k>".
PUBLISHED_ANCHORS: dict[str, dict[str, dict[str, float]]] = {
    "beauty": {
        "TIGER (published)": {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384},
        "SASRec-CE (published, RecBole)": {"recall@10": 0.0821, "ndcg@10": 0.0405},
        "LC-Rec (published)": {"recall@10": 0.0791, "ndcg@10": 0.0438},
    },
}


def metrics_frame(results: Mapping[str, float], model: str, split: str, dataset: str,
                  segment: str | None = None) -> pd.DataFrame:
    """{"recall@10": 0.08, ...} (as from metrics.recall_ndcg_at_k) -> long-form metric rows (with a segment
    column when `segment` is given)."""
    rows = []
    for key, value in results.items():
        metric, k = key.rsplit("@", 1)
        rows.append({"model": model, "split": split, "metric": metric, "k": int(k),
                     "value": float(value), "dataset": dataset, **({"segment": segment} if segment else {})})
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS) + (["segment"] if segment else []))


def with_segment(metrics: pd.DataFrame) -> pd.DataFrame:
    """metrics with a `segment` column (`all` where it has none: tables from before segments)."""
    if "segment" in metrics.columns:
        return metrics.assign(segment=metrics["segment"].fillna("all"))
    return metrics.assign(segment="all")


def _segments(metrics: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(metrics["segment"]))
    return [s for s in SEGMENT_ORDER if s in present] + [s for s in present if s not in SEGMENT_ORDER]


def metrics_table(
    metrics: pd.DataFrame, anchors: Mapping[str, Mapping[str, float]], anchor_dataset: str = ""
) -> pd.DataFrame:
    """Wide table: one row per (dataset, model, split[, segment]) plus one per published anchor (segment
    `all`). The segment column is shown only when a segment other than `all` is present; rows are
    grouped by segment (all, warm, cold), in input order within each."""
    missing = set(METRIC_COLUMNS) - set(metrics.columns)
    if missing:
        raise ValueError(f"metrics is missing columns {sorted(missing)}")
    m = with_segment(metrics)
    segmented = set(m["segment"]) != {"all"}
    m = m.assign(column=m["metric"] + "@" + m["k"].astype(str), source="measured")
    keys = ["dataset", "model", "split", "segment", "source"]
    wide = m.pivot_table(index=keys, columns="column", values="value", aggfunc="first")
    first_seen = m[keys].drop_duplicates()
    rank = {s: i for i, s in enumerate(_segments(m))}
    first_seen = first_seen.iloc[first_seen["segment"].map(rank).argsort(kind="stable")]
    wide = wide.reindex(pd.MultiIndex.from_frame(first_seen)).reset_index()  # input order within a segment
    anchor_rows = [{"dataset": anchor_dataset, "model": name, "split": "test", "segment": "all",
                    "source": "published", **vals} for name, vals in anchors.items()]
    if anchor_rows:
        table = pd.concat([wide, pd.DataFrame(anchor_rows)], ignore_index=True)
        if segmented:  # published figures sit right after the measured `all` rows
            order = table["segment"].map(rank).to_numpy() * 2 + (table["source"] == "published").to_numpy()
            table = table.iloc[order.argsort(kind="stable")].reset_index(drop=True)
    else:
        table = wide
    value_cols = sorted((c for c in table.columns if "@" in c),
                        key=lambda c: (c.split("@")[0], int(c.split("@")[1])))
    return table[["dataset", "model", "split", *(["segment"] if segmented else []), "source", *value_cols]]


def _png_bar(metrics: pd.DataFrame, anchors: Mapping[str, Mapping[str, float]], k: int, path: Path) -> None:
    metrics = with_segment(metrics)
    test = metrics[(metrics["k"] == k) & (metrics["split"] == "test")]
    segments = _segments(test) or ["all"]
    order = {key: i for i, key in enumerate(dict.fromkeys(zip(test["dataset"], test["model"])))}
    fig, axes = plt.subplots(len(segments), 2, figsize=(10, 4 * len(segments)), squeeze=False)
    for row, segment in zip(axes, segments):
        for ax, metric in zip(row, ("recall", "ndcg")):
            sel = test[(test["metric"] == metric) & (test["segment"] == segment)]
            rank = [order[key] for key in zip(sel["dataset"], sel["model"])]  # same model order in every panel
            sel = sel.iloc[sorted(range(len(sel)), key=rank.__getitem__)]
            names = [f"{r.model} ({r.dataset})" for r in sel.itertuples()]
            values = list(sel["value"])
            colors = ["tab:blue"] * len(values)
            for name, vals in anchors.items() if segment == "all" else ():
                if f"{metric}@{k}" in vals:
                    names.append(name)
                    values.append(vals[f"{metric}@{k}"])
                    colors.append("tab:gray")
            ax.barh(range(len(values)), values, color=colors)
            ax.set_yticks(range(len(values)), names, fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"{metric}@{k} (test)" + ("" if segments == ["all"] else f", {segment} users"))
    fig.suptitle("blue: measured, gray: published figures")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _png_by_k(metrics: pd.DataFrame, anchors: Mapping[str, Mapping[str, float]], path: Path) -> None:
    metrics = with_segment(metrics)
    test = metrics[metrics["split"] == "test"]
    segments = _segments(test) or ["all"]
    fig, axes = plt.subplots(len(segments), 2, figsize=(10, 4 * len(segments)), squeeze=False)
    for row, segment in zip(axes, segments):
        for ax, metric in zip(row, ("recall", "ndcg")):
            sel = test[(test["metric"] == metric) & (test["segment"] == segment)]
            for (dataset, model), grp in sel.groupby(["dataset", "model"], sort=False):
                grp = grp.sort_values("k")
                ax.plot(grp["k"], grp["value"], marker="o", label=f"{model} ({dataset})")
            for i, (name, vals) in enumerate(anchors.items() if segment == "all" else ()):
                pts = sorted((int(key.split("@")[1]), v) for key, v in vals.items() if key.startswith(f"{metric}@"))
                if pts:
                    ax.plot(*zip(*pts), linestyle=":", marker="xs^dv"[i % 5], color="gray", label=name)
            ax.set_xlabel("K")
            ax.set_title(f"{metric}@K (test)" + ("" if segments == ["all"] else f", {segment} users"))
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _section_html(title: str, body) -> str:
    if isinstance(body, pd.DataFrame):
        inner = body.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="—")
    elif isinstance(body, Mapping):
        inner = pd.DataFrame({"name": list(body), "value": [str(v) for v in body.values()]}).to_html(index=False)
    elif isinstance(body, list):
        inner = pd.DataFrame(body).to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="—")
    else:
        inner = f"<pre>{html.escape(str(body))}</pre>"
    return f"<h2>{html.escape(title)}</h2>\n{inner}\n"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(
    out_dir: str | Path,
    metrics: pd.DataFrame,
    anchors: Mapping[str, Mapping[str, float]] | None = None,
    extra_sections: Mapping[str, object] | None = None,
    title: str = "genrec evaluation",
    bar_k: int = 10,
    anchor_dataset: str = "",
) -> Path:
    """Write report.html, metrics_bar.png and metrics_by_k.png into out_dir; return the HTML path.

    anchors: {"name": {"recall@10": v, ...}} published figures shown beside measured rows (default: those
    of `anchor_dataset` in PUBLISHED_ANCHORS, none for a dataset without published figures on our split).
    extra_sections: title -> DataFrame, dict, list of dicts or text, rendered in order after the metrics.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    anchors = PUBLISHED_ANCHORS.get(anchor_dataset, {}) if anchors is None else anchors
    table = metrics_table(metrics, anchors, anchor_dataset)
    bar_png, by_k_png = out / "metrics_bar.png", out / "metrics_by_k.png"
    _png_bar(metrics, anchors, bar_k, bar_png)
    _png_by_k(metrics, anchors, by_k_png)
    parts = [
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}</style>",
        f"</head><body>\n<h1>{html.escape(title)}</h1>",
        _section_html("Metrics (source=published rows are figures from the literature, not measured here)", table),
        _img(bar_png, f"Recall and NDCG at {bar_k}"),
        _img(by_k_png, "Recall and NDCG over K"),
    ]
    parts += [_section_html(name, body) for name, body in (extra_sections or {}).items()]
    parts.append("</body></html>\n")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
