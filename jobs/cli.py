"""`genrec` console script.

    genrec run STAGE --conf FILE [key=value ...]     (same as spark-submit jobs/STAGE.py ...)
    genrec report --conf FILE [run_date=...]          (HTML + PNG report of a run date)
    genrec stages
"""
from __future__ import annotations

import sys

from jobs.stages import EXTRA_STAGES, STAGES

USAGE = f"""usage: genrec run STAGE --conf FILE [key=value ...]
       genrec report --conf FILE [run_date=YYYY-MM-DD] [key=value ...]
       genrec stages
stages: {', '.join(STAGES)}, pipeline (all in order); run alone: {', '.join(EXTRA_STAGES)}"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "stages":
        print("\n".join(STAGES + ["pipeline"] + EXTRA_STAGES))
        return 0
    if argv[0] == "report":
        from jobs.common import main_for
        from jobs.report import run as report

        return main_for("report", report, argv[1:])
    if argv[0] != "run" or len(argv) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    stage, rest = argv[1], argv[2:]
    if stage == "pipeline":
        from jobs.pipeline import main as pipeline_main

        return pipeline_main(rest)
    if stage not in STAGES + EXTRA_STAGES:
        print(f"genrec: unknown stage {stage!r}\n{USAGE}", file=sys.stderr)
        return 2
    from jobs.common import main_for
    from jobs.stages import stage_runner

    return main_for(stage, stage_runner(stage), rest)


if __name__ == "__main__":
    sys.exit(main())
