"""SIGMA-style score fusion at serving time: accuracy vs. diversity, measured through the jobs.

For each (prior, weight[, adaptive]) setting the `recommend` job decodes the test split again under its
own model name (the frozen model, only `recommend.serving` changes), then one `evaluate` scores every
model of the run date with the same code. Prints Recall/NDCG@10 beside catalog coverage@10 and
intra-list category diversity@10, each relative to the unfused lists, and saves a trade-off plot.

    python benchmarks/fusion_tradeoff.py --conf conf/scientific.yaml --run-date 2026-11-24

Needs the frozen pipeline of that config to have run for the date (model exported, test split decoded).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pandas as pd
from metrics_table import read_metrics  # benchmarks/ is sys.path[0] when run as a script

from genrec_model.config import load_config

METRICS = ["recall@10", "ndcg@10", "coverage@10", "intra_list_diversity@10"]


def setting_name(prior: str, weight: float, adaptive: bool) -> str:
    return f"genrec-{prior[:3]}{'-ad' if adaptive else ''}-w{weight:g}"


def run_stage(genrec: str, stage: str, conf: str, overrides: list[str]) -> None:
    cmd = [genrec, "run", stage, "--conf", conf, *overrides]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", required=True)
    ap.add_argument("--run-date", required=True)
    ap.add_argument("--settings", default="category:0.2,category:0.5,category:0.8,category:0.5:adaptive,"
                                          "popularity:0.2,popularity:0.5",
                    help="comma separated prior:weight[:adaptive]")
    ap.add_argument("--skip-decode", action="store_true", help="only re-read the metrics table")
    ap.add_argument("--genrec", default=os.path.join(os.path.dirname(sys.executable), "genrec"))
    args = ap.parse_args()
    cfg = load_config(args.conf, [f"run_date={args.run_date}"])
    names = []
    for spec in args.settings.split(","):
        prior, weight, *rest = spec.split(":")
        adaptive = rest == ["adaptive"]
        name = setting_name(prior, float(weight), adaptive)
        names.append(name)
        if not args.skip_decode:
            run_stage(args.genrec, "recommend", args.conf, [
                f"run_date={args.run_date}", "recommend.splits=[test]", f"recommend.model_name={name}",
                f"recommend.serving.prior={prior}", f"recommend.serving.fusion_weight={weight}",
                f"recommend.serving.adaptive={str(adaptive).lower()}"])
    if not args.skip_decode:
        run_stage(args.genrec, "evaluate", args.conf, [f"run_date={args.run_date}"])
    table = read_metrics(cfg.lakehouse.root, args.run_date, "test").droplevel("lakehouse")[METRICS]
    rows = table.loc[[n for n in [cfg.recommend.model_name, *names] if n in table.index]]
    rel = rows / rows.loc[cfg.recommend.model_name]
    out = rows.round(4).join(rel.add_suffix(" rel").round(3))
    pd.set_option("display.width", 250)
    print(f"{cfg.data.dataset} test split, run_date {args.run_date}:")
    print(out.to_string())
    plot_path = cfg.artifact_path("reports", args.run_date, "fusion_tradeoff.png")
    os.makedirs(os.path.dirname(plot_path), exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, x in zip(axes, ["intra_list_diversity@10", "coverage@10"]):
        ax.scatter(rows[x], rows["recall@10"])
        for name, r in rows.iterrows():
            ax.annotate(name.replace("genrec-", "") or name, (r[x], r["recall@10"]), fontsize=7)
        ax.set_xlabel(x)
        ax.set_ylabel("recall@10")
    fig.suptitle(f"score fusion trade-off, {cfg.data.dataset} test")
    fig.tight_layout()
    fig.savefig(plot_path, dpi=110)
    print(f"plot: {plot_path}")
    best = rows.drop(cfg.recommend.model_name)
    print("fusion_settings=%d max_ild_gain=%.3f recall_at_max_ild=%.3f" % (
        len(best), rel.drop(cfg.recommend.model_name)["intra_list_diversity@10"].max(),
        rel.loc[best["intra_list_diversity@10"].idxmax(), "recall@10"]))


if __name__ == "__main__":
    main()
