"""The pipeline's stages, in data-flow order: name -> module holding `run(ctx)`."""
from __future__ import annotations

import importlib

STAGES: list[str] = ["ingest", "embed", "sids", "train", "export", "recommend", "baselines", "evaluate"]
# run on their own (`genrec run judge`, then `align`), not by `pipeline`: the alignment stages (S-GRec); the
# pipeline adds `judge` and `ranker` when the served lists are re-ranked (jobs/pipeline.py)
EXTRA_STAGES: list[str] = ["judge", "align", "ranker"]


def stage_runner(name: str):
    if name not in STAGES + EXTRA_STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES + EXTRA_STAGES + ['pipeline'])}")
    return importlib.import_module(f"jobs.{name}").run
