"""One training process vs several (TorchDistributor, DDP), same config, a few seeds: do they land within seed
noise of each other on validation and test, and what does each process train per second?

    python benchmarks/distributed_train.py --conf conf/local.yaml --processes 1 2 --seeds 0 1 [-- overrides]

Runs the real jobs on the config's lakehouse: ingest, embed and sids once (skipped when `--reuse` finds
item_sids), then per (processes, seed): train -> export -> recommend (splits test, valid; model name
`genrec-p<processes>-s<seed>`, served as the selected model: no serving refit, no judge re-rank), and one
evaluate. Prints valid/test R@10, N@10 (segment `all`), train minutes, best epoch and samples/s per process.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMPARE = ["train.refit_for_serving=false", "recommend.serving.judge_weight=0.0", "recommend.splits=[test, valid]",
           "evaluate.splits=[test, valid]"]


def main() -> None:
    from genrec_model.config import load_config
    from jobs.common import make_context, run_recorded
    from jobs.stages import stage_runner
    from udfs.session import build_spark

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", default="conf/local.yaml")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--reuse", action="store_true", help="keep the lakehouse's catalog, embeddings and SIDs")
    ap.add_argument("overrides", nargs="*", help="config overrides for every stage, key=value")
    args = ap.parse_args()
    base = load_config(args.conf, [*args.overrides, *COMPARE])
    spark = build_spark(base.spark, "distributed_train")

    def run(stage: str, extra: list[str] = ()):
        ctx = make_context(stage, load_config(args.conf, [*args.overrides, *COMPARE, *extra]), spark)
        run_recorded(ctx, stage_runner(stage))
        return ctx

    have_sids = os.path.isdir(os.path.join(base.lakehouse_root(), "item_sids", "_delta_log"))
    if not (args.reuse and have_sids):
        for stage in ("ingest", "embed", "sids"):
            run(stage)
    trained = {}
    for n in args.processes:
        for seed in args.seeds:
            name = f"genrec-p{n}-s{seed}"
            extra = [f"train.distributed.num_processes={n}", f"train.trainer.seed={seed}",
                     f"recommend.model_name={name}"]
            trained[name] = run("train", extra).counts
            run("export", extra)
            run("recommend", extra)
    metrics = run("evaluate").counts
    spark.stop()
    print(f"\n{'model':<16}{'valid R@10':>11}{'valid N@10':>11}{'test R@10':>10}{'test N@10':>10}"
          f"{'train min':>10}{'best ep':>8}{'samples/s/proc':>15}")
    for name, c in trained.items():
        m = [metrics.get(f"{name}.{split}.{metric}@10", float("nan"))
             for split in ("valid", "test") for metric in ("recall", "ndcg")]
        print(f"{name:<16}{m[0]:>11.4f}{m[1]:>11.4f}{m[2]:>10.4f}{m[3]:>10.4f}{c['train_minutes']:>10.1f}"
              f"{int(c['best_epoch']):>8}{c['train_samples_per_s_per_process']:>15.1f}")


if __name__ == "__main__":
    main()
