"""Stage `judge` (run alone, not by `pipeline`): the personalized semantic judge of S-GRec alignment.

    genrec run judge --conf conf/beauty.yaml [align.judge.epochs=4]

Trains the judge's user-conditional aspect weights (genrec_model/align/judge.py) on (history, next item)
pairs from users' training prefixes only (validation and test events never reach it; under the cold-start
protocol withheld items' events are dropped, as for the generator), then writes a versioned artifact
`<artifacts>/judges/<version>/` with its evaluation: pairwise AUC of held-out next items (the validation
items) against random and same-prefix negatives, for the judge, uniform weights and each aspect alone.
"""
from __future__ import annotations

import datetime as dt
import os
import sys

import numpy as np

from genrec_model.config_loader import stable_hash, to_dict
from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_EMBEDDINGS, ITEM_SIDS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.align.judge import ItemSide, evaluate_judge, fit_judge, next_item_examples
    from genrec_model.data.splits import cold_item_mask, split_sequence
    from genrec_model.model.artifacts import publish_latest
    from udfs.sequence_fns import item_content, item_table, user_sequences

    cfg = ctx.cfg.align.judge
    catalog_items = item_table(ctx.read(ITEM_SIDS), ctx.read(CATALOG))
    cold = cold_item_mask(catalog_items["item_id"], ctx.cfg.data.cold_item_share, ctx.cfg.data.cold_seed)
    items = catalog_items[~cold].reset_index(drop=True)
    version = f"j-{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}-{stable_hash(to_dict(cfg), 6)}"
    root = ctx.cfg.artifact_path("judges")
    out_dir = os.path.join(root, version)
    sequences = user_sequences(ctx.spark, ctx.read(INTERACTIONS), items, os.path.join(out_dir, "shards"))
    train, valid_hist, valid_target = [], [], []
    for seq in sequences:
        prefix, valid, _ = split_sequence(seq, cfg.max_history)
        train.append(prefix)
        if valid is not None and len(valid.history):
            valid_hist.append(valid.history)
            valid_target.append(valid.target)
    side, popularity = ItemSide.from_training(item_content(ctx.read(ITEM_EMBEDDINGS), items["item_id"].tolist()),
                                              train, np.stack(items["codes"].to_numpy()))
    hist, pos = next_item_examples(train, cfg.max_train_examples, np.random.default_rng(cfg.seed))
    log_event("judge", "data", users=len(sequences), items=len(items), train_pairs=len(pos),
              held_out=len(valid_target))
    judge = fit_judge(side, hist, pos, popularity, cfg)
    judge.metrics = evaluate_judge(judge, side, valid_hist, np.asarray(valid_target, dtype=np.int64))
    judge.save(out_dir, extra={"version": version, "dataset": ctx.cfg.data.dataset, "run_id": ctx.run_id,
                               "config_hash": ctx.cfg.config_hash(),
                               "codebook_version": items["codebook_version"].iloc[0], "train_pairs": len(pos)})
    publish_latest(root, version)
    ctx.counts.update({"train_pairs": len(pos), "held_out": len(valid_target), "items": len(items),
                       **{k: v for k, v in judge.metrics.items() if isinstance(v, float)},
                       **{f"weight.{a}": w for a, w in judge.metrics["mean_aspect_weights"].items()}})
    log_event("judge", "written", version=version, path=out_dir,
              auc_random=round(judge.metrics["auc_random.judge"], 4), auc_hard=round(judge.metrics["auc_hard.judge"], 4))


if __name__ == "__main__":
    sys.exit(main_for("judge", run))
