"""Stage `baselines`: most-popular, SASRec (full-softmax cross-entropy), content-knn and item-transition lists for the
evaluation splits, written to `recommendations` under their own `model` value so `evaluate` scores them
with exactly the same code as the generative model.

Cold-start protocol (data.cold_item_share > 0): popularity and SASRec learn from no interaction with a
withheld item (genrec_model/baselines/cold_start.py); content-knn reads item text embeddings only; transition
counts the split's histories without a withheld item's event (genrec_model/serve/transitions.py).

    spark-submit jobs/baselines.py --conf conf/beauty.yaml run_date=2026-11-24
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys

import numpy as np
import pandas as pd

from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_EMBEDDINGS, RECOMMENDATIONS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.baselines.cold_start import baseline_data, warm_only
    from genrec_model.config_loader import stable_hash
    from genrec_model.data.splits import cold_item_mask
    from genrec_model.serve.popularity import popularity_counts, popularity_rank
    from udfs.delta_store import spark_schema
    from udfs.sequence_fns import user_sequences

    cfg = ctx.cfg.baselines
    k = ctx.cfg.recommend.serving.top_k
    filter_seen = ctx.cfg.recommend.serving.filter_seen
    splits = [s for s in ctx.cfg.recommend.splits if s in ("test", "valid")]
    if not splits:
        raise RuntimeError("baselines need recommend.splits to include test and/or valid")
    items = ctx.read(CATALOG).select("item_id").toPandas().sort_values("item_id").reset_index(drop=True)
    shard_dir = ctx.cfg.artifact_path("baselines", ctx.run_date, "shards")
    user_ids, sequences = user_sequences(ctx.spark, ctx.read(INTERACTIONS), items, shard_dir, with_users=True)
    cold = cold_item_mask(items["item_id"].tolist(), ctx.cfg.data.cold_item_share, ctx.cfg.data.cold_seed)
    data = baseline_data(sequences, cold)
    cases = data.cases
    ctx.counts["cold_items"] = int(cold.sum())
    ctx.counts["cold_train_events_dropped"] = data.cold_events_dropped
    now = dt.datetime.now(dt.timezone.utc)
    frames = []
    counts = popularity_counts(data.train, len(items))  # no cold item is ever counted

    def emit(model: str, version: str, split: str, users: list[int], ranked: np.ndarray,
             fallback: np.ndarray | None = None) -> None:
        recs = [[{"item_id": items["item_id"].iloc[i], "score": float(-r), "rank": r + 1}
                 for r, i in enumerate(row) if i >= 0] for row in ranked]
        frames.append(pd.DataFrame({"user_id": [user_ids[u] for u in users], "recs": recs,
                                    "is_fallback": False if fallback is None else fallback,
                                    "model_version": version, "codebook_version": None, "generated_at": now,
                                    "run_date": ctx.run_day, "split": split, "model": model}))

    if "popularity" in cfg.models:
        for split in splits:
            users = [u for u, _ in cases[split]]
            seen = [ex.history for _, ex in cases[split]] if filter_seen else None
            emit("popularity", "popularity", split, users, popularity_rank(counts, len(users), k, seen))
    if "sasrec" in cfg.models:
        from genrec_model.baselines.sasrec_train import sasrec_rank, train_sasrec

        if cfg.sasrec.n_items:
            raise ValueError("baselines.sasrec.n_items is set from the catalog; leave it 0")
        scfg = dataclasses.replace(cfg.sasrec, n_items=len(items))
        model, history = train_sasrec(data.train, data.valid_train, scfg, cfg.sasrec_train)
        version = f"sasrec-{stable_hash([dataclasses.asdict(scfg), dataclasses.asdict(cfg.sasrec_train)], 8)}"
        for split in splits:
            users = [u for u, _ in cases[split]]
            full = [ex.history for _, ex in cases[split]]
            # SASRec cannot embed an item it never trained on (a cold item's row is its random init): the
            # model reads only the warm items of a history. Seen-item filtering still uses the full history.
            # A history of cold items only leaves no input: that user gets the popularity list (is_fallback).
            warm = [warm_only(h, cold) for h in full]
            empty = np.array([len(h) == 0 for h in warm], dtype=bool)
            ranked = np.full((len(users), k), -1, dtype=np.int64)
            has = np.flatnonzero(~empty)
            if len(has):
                ranked[has] = sasrec_rank(model, [warm[i] for i in has], k,
                                          [full[i] for i in has] if filter_seen else None)
            if empty.any():
                none = np.flatnonzero(empty)
                ranked[none] = popularity_rank(counts, len(none), k, [full[i] for i in none] if filter_seen else None)
            emit("sasrec", version, split, users, ranked, empty)
            ctx.counts[f"sasrec_{split}_fallback_users"] = int(empty.sum())
        best = max(history, key=lambda r: r[f"recall@{cfg.sasrec_train.eval_k}"]) if history else {}
        ctx.counts["sasrec_epochs"] = history[-1]["epoch"] if history else 0
        ctx.counts["sasrec_best_epoch"] = best.get("epoch", 0)
        ctx.counts["sasrec_train_cpu_seconds"] = history[-1]["cpu_seconds"] if history else 0.0
        ctx.counts["sasrec_train_wall_seconds"] = history[-1]["seconds"] if history else 0.0
        ctx.counts["sasrec_max_len"] = scfg.max_len
        ctx.counts["sasrec_valid_examples"] = len(data.valid_train)
    if "content_knn" in cfg.models:
        from genrec_model.baselines.content_knn import content_knn_rank

        emb = ctx.read(ITEM_EMBEDDINGS).select("item_id", "embedding", "model_name").toPandas()
        names = sorted(set(emb["model_name"]))
        if len(names) > 1:
            raise RuntimeError(f"item_embeddings must come from one model, found {names}: rerun embed")
        index = pd.Series(np.arange(len(items)), index=items["item_id"])
        emb = emb[emb["item_id"].isin(index.index)]
        dim = len(emb["embedding"].iloc[0]) if len(emb) else 1
        matrix = np.zeros((len(items), dim), dtype=np.float32)  # zero row: no embedding, ranked last
        if len(emb):
            matrix[index[emb["item_id"]].to_numpy()] = np.stack(emb["embedding"].to_numpy())
        ctx.counts["content_knn_items_without_embedding"] = len(items) - len(emb)
        version = f"content_knn-{stable_hash([dataclasses.asdict(cfg.content_knn), names], 8)}"
        for split in splits:
            users = [u for u, _ in cases[split]]
            hist = [ex.history for _, ex in cases[split]]  # cold items included: text is all it needs
            emit("content_knn", version, split, users,
                 content_knn_rank(matrix, hist, k, cfg.content_knn, hist if filter_seen else None))
    if "transition" in cfg.models:
        from genrec_model.data.splits import split_history
        from genrec_model.serve.popularity import popularity_order
        from genrec_model.serve.transitions import count_transitions, transition_rank

        # the table genrec's ranker reads (recommend.serving.transitions): each split's histories, no cold event
        tcfg = ctx.cfg.recommend.serving.transitions
        version = f"transition-{stable_hash(dataclasses.asdict(tcfg), 8)}"
        order = popularity_order(counts)
        for split in splits:
            table = count_transitions([warm_only(split_history(s, split), cold) for s in sequences], len(items), tcfg)
            users = [u for u, _ in cases[split]]
            hist = [ex.history for _, ex in cases[split]]
            ranked, filled = transition_rank(table, hist, k, tcfg, order, hist if filter_seen else None)
            emit("transition", version, split, users, ranked, filled)
            ctx.counts[f"transition_{split}_pairs"] = table.nnz
            ctx.counts[f"transition_{split}_filled_users"] = int(filled.sum())
    out = ctx.spark.createDataFrame(pd.concat(frames, ignore_index=True), spark_schema(RECOMMENDATIONS))
    result = ctx.write(out, RECOMMENDATIONS, replace_partitions=[
        {"run_date": ctx.run_date, "split": s, "model": m} for s in splits for m in cfg.models])
    ctx.counts["rows"] = result.num_rows
    log_event("baselines", "written", models=",".join(cfg.models), splits=",".join(splits), rows=result.num_rows,
              cold_items=int(cold.sum()), shards=os.path.basename(shard_dir))


if __name__ == "__main__":
    sys.exit(main_for("baselines", run))
