"""One Markdown table from the `metrics` tables of several lakehouses (frozen run + ablations).

    python benchmarks/metrics_table.py --run-date 2026-11-24 --split test \
        lakehouse/beauty lakehouse/beauty-collab lakehouse/beauty-dedup lakehouse/beauty-t2s

Each row is one (lakehouse, model) as `evaluate` wrote it; nothing is recomputed here. --segment picks
the users (all | warm | cold, the cold-start protocol); tables from before segments hold `all` only.
"""
from __future__ import annotations

import argparse
import os

import pandas as pd
from deltalake import DeltaTable

COLUMNS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "coverage@10",
           "intra_list_diversity@10", "cold_item_share@10", "users"]
SEGMENTS = ["all", "warm", "cold"]


def read_metrics(root: str, run_date: str, split: str, segment: str = "all") -> pd.DataFrame:
    m = DeltaTable(os.path.join(root, "metrics")).to_pandas()
    seg = m["segment"].fillna("all") if "segment" in m.columns else pd.Series("all", index=m.index)
    m = m[(m["run_date"].astype(str) == run_date) & (m["split"] == split) & (seg == segment)]
    m = m.assign(key=m["metric"] + m["k"].map(lambda k: "" if pd.isna(k) else f"@{int(k)}"),
                 lakehouse=os.path.basename(os.path.normpath(root)))
    return m.pivot_table(index=["lakehouse", "model"], columns="key", values="value")


def to_markdown(table: pd.DataFrame) -> str:
    cols = [c for c in COLUMNS if c in table.columns]
    lines = ["| lakehouse | model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for (lake, model), row in table[cols].iterrows():
        cells = [f"{int(v)}" if c == "users" else f"{v:.4f}" for c, v in row.items()]
        lines.append(f"| {lake} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("roots", nargs="+", help="lakehouse roots holding a `metrics` table")
    ap.add_argument("--run-date", required=True)
    ap.add_argument("--split", default="test", choices=["test", "valid"])
    ap.add_argument("--segment", default="all", choices=SEGMENTS,
                    help="users whose held-out item is a withheld item (cold), the others (warm), or all")
    args = ap.parse_args()
    tables = [read_metrics(r, args.run_date, args.split, args.segment) for r in args.roots
              if os.path.isdir(os.path.join(r, "metrics"))]
    print(to_markdown(pd.concat(tables)))


if __name__ == "__main__":
    main()
