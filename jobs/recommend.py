"""Stage `recommend`: per user, constrained beam search over the exported model in Spark partitions
-> `recommendations`, one atomic replace per run date (re-runs never duplicate).

    spark-submit jobs/recommend.py --conf conf/beauty.yaml run_date=2026-11-24
    spark-submit jobs/recommend.py --conf conf/beauty.yaml start_date=2026-11-01 end_date=2026-11-07

Refuses to run, writing nothing, when the model was trained on another codebook version than
the `item_sids` snapshot it would decode against.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
import time

import numpy as np

from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_SIDS, RECOMMENDATIONS
from jobs.common import JobContext, Progress, log_event, main_for


def run(ctx: JobContext) -> None:
    from pyspark.sql import functions as F

    from genrec_model.data.schemas import run_date_value
    from genrec_model.model.artifacts import read_export, read_model
    from udfs.recommend_fns import OUT_DDL, DecodeInputs, beam_configs, make_recommend_fn, popularity_per_item
    from udfs.split_fns import histories_df, history_item_counts
    from udfs.transition_fns import transition_table

    cfg = ctx.cfg.recommend
    t0 = time.perf_counter()
    model = read_model(ctx.cfg.artifact_path("models"), cfg.model_version)
    version, onnx_dir = model.version, model.onnx_dir
    manifest = read_export(onnx_dir)
    sids = ctx.read(ITEM_SIDS)
    in_use = sorted(r[0] for r in sids.select("codebook_version").distinct().collect())
    if in_use != [manifest["codebook_version"]]:
        raise RuntimeError(
            f"model {version} was trained on codebook {manifest['codebook_version']!r} but item_sids holds "
            f"{in_use}: retrain and export the model on the current SIDs (nothing was written)")
    item_ids, codes, seen, dropped, not_exported = decodable_items(ctx, sids, onnx_dir)
    interactions = ctx.read(INTERACTIONS)
    categories = _categories(ctx, item_ids) if cfg.serving.prior == "category" and cfg.serving.fusion_weight > 0 else None
    beam, new_beam = beam_configs(cfg, manifest["model_config"])
    ranker = load_ranker(ctx, version, manifest["codebook_version"]) if cfg.serving.ranker else None
    judge, judge_items = (None, None)
    if cfg.serving.judge_weight or ranker is not None:
        judge, judge_items = load_judge(ctx, item_ids, codes, ranker.manifest["judge_version"] if ranker else "")
    ctx.counts.update({"decode_children_normalized": float(beam.normalize == "children"), "serving_refit": float(model.onnx_dir_for("serve") != onnx_dir), "items_decodable": len(item_ids), "items_dropped_not_in_catalog": dropped,
                       "items_unseen_in_training": int((~seen).sum()), "items_not_in_export": not_exported,
                       "load_seconds": time.perf_counter() - t0})
    if not_exported:
        log_event("recommend", "warning", items_not_in_export=not_exported,
                  hint="items coded after the export cannot be recommended tonight: run export (content models "
                       "cover every item of item_sids at export time)")
    progress = Progress("recommend", "run_date", len(ctx.cfg.run_dates()))
    for run_date in ctx.cfg.run_dates():
        day = run_date_value(run_date)  # the value of the run_date column
        t1 = time.perf_counter()
        generated_at = dt.datetime.now(dt.timezone.utc)
        as_of = run_date if ctx.cfg.start_date else None
        parts = []
        data = ctx.cfg.data  # withheld items' events count in no collaborative signal (cold-start protocol)
        counts = history_item_counts(interactions, cfg.splits, as_of, data.cold_item_share, data.cold_seed)
        for split in cfg.splits:
            hist = histories_df(interactions, split, as_of)
            popularity = popularity_per_item(counts[split], item_ids)
            judged = None
            if judge is not None:  # the judge's popularity aspect: this split's histories, as the fill
                judged = (judge, judge_items.with_popularity(popularity))
            transitions = None
            if ranker is not None:  # the ranker's collaborative features: this split's histories
                t2 = time.perf_counter()
                table = transition_table(interactions, split, as_of, item_ids, cfg.serving.transitions,
                                         data.cold_item_share, data.cold_seed)
                transitions = (table, cfg.serving.transitions)
                ctx.counts[f"{split}.transition_pairs"] = table.nnz
                ctx.counts["transition_seconds"] = ctx.counts.get("transition_seconds", 0.0) + time.perf_counter() - t2
            inputs = DecodeInputs(popularity, beam, cfg.serving, categories, new_beam, judged, ranker, transitions)
            split_dir = model.onnx_dir_for(split)  # `serve`: the refit on every event, when trained with one
            fn = make_recommend_fn(f"{version}:{os.path.basename(split_dir)}:{ctx.run_id}", split_dir, item_ids, codes,
                                   model.max_history, cfg.use_gpu, manifest["codebook_version"], inputs, seen)
            recs = hist.repartition(cfg.partitions).mapInArrow(fn, OUT_DDL)
            parts.append(recs.select(
                "user_id", "recs", "is_fallback", F.lit(version).alias("model_version"),
                F.lit(manifest["codebook_version"]).alias("codebook_version"),
                F.lit(generated_at).alias("generated_at"), F.lit(day).alias("run_date"),
                F.lit(split).alias("split"), F.lit(cfg.model_name).alias("model")))
        out = parts[0]
        for p in parts[1:]:
            out = out.unionByName(p)
        result = ctx.write(out, RECOMMENDATIONS,
                           replace_partitions=[{"run_date": run_date, "split": s, "model": cfg.model_name}
                                               for s in cfg.splits],
                           metadata={"genrec.model_version": version,
                                     "genrec.codebook_version": manifest["codebook_version"]})
        seconds = time.perf_counter() - t1
        # this write's rows only: the date also holds other models' lists (baselines, ablations)
        written = ctx.store.read(RECOMMENDATIONS, result.version)[0].where(
            (F.col("run_date") == F.lit(day)) & (F.col("model") == cfg.model_name) & F.col("split").isin(list(cfg.splits)))
        fallback = written.where("is_fallback").count()
        unseen_slots = _slots_with(ctx, written, item_ids[~seen])
        prefix = "" if len(ctx.cfg.run_dates()) == 1 else f"{run_date}."
        ctx.counts.update({f"{prefix}users": result.num_rows, f"{prefix}fallback_users": fallback,
                           f"{prefix}rec_slots_unseen_in_training": unseen_slots,
                           f"{prefix}decode_write_seconds": seconds,
                           f"{prefix}users_per_s": result.num_rows / max(seconds, 1e-9)})
        log_event("recommend", "written", run_date=run_date, splits=",".join(cfg.splits), rows=result.num_rows,
                  fallback=fallback, seconds=round(seconds, 1), users_per_s=round(result.num_rows / seconds, 1))
        progress.advance(run_date=run_date, users=result.num_rows)


def decodable_items(ctx: JobContext, sids, onnx_dir: str):
    """The export's items that are in tonight's catalog and coded (item_sids also keeps retired items' reserved
    SIDs): (item_ids, codes, seen, dropped: exported but not in the catalog, not_exported: coded after the export)."""
    from genrec_model.model.artifacts import read_export_items

    export_ids, export_codes, seen = read_export_items(onnx_dir)  # a content model: tonight's catalog at export
    current = {r[0] for r in sids.join(ctx.read(CATALOG).select("item_id"), on="item_id").select("item_id").collect()}
    keep = np.isin(export_ids, list(current))
    return export_ids[keep], export_codes[keep], seen[keep], int((~keep).sum()), len(current - set(export_ids))


def load_judge(ctx: JobContext, item_ids: np.ndarray, codes: np.ndarray, version: str = ""):
    """The semantic judge `version` (empty: recommend.judge_version, else the latest) and its view of the
    decodable items (popularity set per split)."""
    from genrec_model.align.judge import ItemSide, SemanticJudge
    from genrec_model.data.schemas import ITEM_EMBEDDINGS
    from genrec_model.model.artifacts import resolve_version
    from udfs.sequence_fns import item_content

    root = ctx.cfg.artifact_path("judges")
    try:
        version = resolve_version(root, version or ctx.cfg.recommend.judge_version)
    except FileNotFoundError as e:
        raise FileNotFoundError("recommend.serving.judge_weight > 0 or serving.ranker needs a judge: run "
                                "`genrec run judge` first (nothing was written)") from e
    judge = SemanticJudge.load(os.path.join(root, version))
    ctx.counts.update({"judge_weight": ctx.cfg.recommend.serving.judge_weight})
    log_event(ctx.job, "judge", version=version, weight=ctx.cfg.recommend.serving.judge_weight)
    embeddings = item_content(ctx.read(ITEM_EMBEDDINGS), [str(i) for i in item_ids])
    return judge, ItemSide.build(embeddings, np.zeros(len(item_ids)), codes[:, 0])


def load_ranker(ctx: JobContext, model_version: str, codebook_version: str):
    """The ranker of serving.ranker (recommend.ranker_version, else the latest); refuses one fit for another
    model or codebook: its log-prob weight is that model's."""
    from genrec_model.model.artifacts import resolve_version
    from genrec_model.serve.ranker import Ranker

    root = ctx.cfg.artifact_path("rankers")
    try:
        version = resolve_version(root, ctx.cfg.recommend.ranker_version)
    except FileNotFoundError as e:
        raise FileNotFoundError("recommend.serving.ranker needs a ranker: run `genrec run ranker` first "
                                "(nothing was written)") from e
    ranker = Ranker.load(os.path.join(root, version))
    fit_for = (ranker.manifest.get("model_version"), ranker.manifest.get("codebook_version"))
    if fit_for != (model_version, codebook_version):
        raise RuntimeError(f"ranker {version} was fit for model {fit_for[0]} on codebook {fit_for[1]}, not "
                           f"{model_version} on {codebook_version}: run `genrec run ranker` (nothing was written)")
    transitions = dataclasses.asdict(ctx.cfg.recommend.serving.transitions)
    if ranker.manifest.get("transitions") != transitions:
        raise RuntimeError(f"ranker {version} was fit on transition features counted with "
                           f"{ranker.manifest.get('transitions')}, not recommend.serving.transitions={transitions}: "
                           "run `genrec run ranker` (nothing was written)")
    serving = ctx.cfg.recommend.serving
    fit_new = (ranker.manifest.get("new_item_candidates"), ranker.manifest.get("new_item_knn"))
    if fit_new != (serving.new_item_candidates, dataclasses.asdict(serving.new_item_knn)):
        raise RuntimeError(f"ranker {version} was fit with new_item_candidates={fit_new[0]}, new_item_knn={fit_new[1]}, "
                           f"not recommend.serving.new_item_candidates={serving.new_item_candidates}, new_item_knn="
                           f"{dataclasses.asdict(serving.new_item_knn)}: its new-item weights are those candidates' "
                           "(run `genrec run ranker`; nothing was written)")
    ctx.counts["ranker_users"] = ranker.manifest.get("users", 0)
    log_event(ctx.job, "ranker", version=version, weights=dict(zip(ranker.features, ranker.weights.round(4).tolist())))
    return ranker


def _slots_with(ctx: JobContext, written, item_ids: np.ndarray) -> int:
    """How many list slots hold one of `item_ids` (here: items the model never saw in training)."""
    from pyspark.sql import functions as F

    if not len(item_ids):
        return 0
    wanted = ctx.spark.createDataFrame([(str(i),) for i in item_ids], "item_id string")
    return written.select(F.explode("recs.item_id").alias("item_id")).join(wanted, on="item_id").count()


def _categories(ctx: JobContext, item_ids: np.ndarray) -> np.ndarray:
    """Category code per decodable item for the category prior (same level as `evaluate` uses)."""
    from genrec_model.serve.diversity import category_codes
    from udfs.eval_fns import category_level

    catalog = ctx.read(CATALOG)
    level = category_level(catalog, ctx.cfg.data.category_level)
    paths = catalog.select("item_id", "categories").toPandas().set_index("item_id")["categories"]
    ctx.counts["category_level"] = level
    return category_codes([paths.get(i) for i in item_ids], level)



if __name__ == "__main__":
    sys.exit(main_for("recommend", run))
