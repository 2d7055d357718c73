"""Stage `pipeline`: every stage in order, in one Spark session (each stage records its own run).

    spark-submit jobs/pipeline.py --conf conf/local.yaml [key=value ...]
"""
from __future__ import annotations

import sys

from genrec_model.config import load_config
from genrec_model.config_loader import ConfigError
from jobs.common import log_event, make_context, parse_args, run_recorded, setup_logging
from jobs.stages import STAGES, stage_runner


def pipeline_stages(cfg) -> list[str]:
    """STAGES, plus the judge before export when the served lists are re-ranked by it (serving.judge_weight or
    serving.ranker), and the ranker, fit on the exported model, before recommend (serving.ranker)."""
    serving = cfg.recommend.serving
    stages = list(STAGES)
    if serving.judge_weight or serving.ranker:
        stages.insert(stages.index("export"), "judge")
    if serving.ranker:
        stages.insert(stages.index("recommend"), "ranker")
    return stages


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    conf, overrides = parse_args(sys.argv[1:] if argv is None else argv, "genrec run pipeline")
    try:
        cfg = load_config(conf, overrides)
    except ConfigError as e:
        print(f"genrec: config error: {e}", file=sys.stderr)
        return 2
    spark = None
    stages = pipeline_stages(cfg)
    for stage in stages:
        ctx = make_context(stage, cfg, spark)
        spark = ctx.spark
        run_recorded(ctx, stage_runner(stage))
    log_event("pipeline", "done", stages=",".join(stages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
