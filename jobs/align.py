"""Stage `align` (run alone, not by `pipeline`): post-trains the trained generator with A2PO (S-GRec),
the business reward anchored on the observed next item, the semantic judge's score added where it agrees.

    genrec run align --conf conf/beauty.yaml [align.policy.mode=business] [align.policy.model_version=m-...]

Starts from an SFT model (align.policy.model_version; empty = the latest model, or the SFT model the latest
was aligned from), trains on (training prefix, next item) pairs only, keeps the step with the best validation
`align.policy.monitor` (step 0 = the SFT model) and writes a new model version (LATEST) whose manifest names
`aligned_from`; export and recommend then serve it as any other version. Needs a judge (`genrec run judge`)
unless align.policy.mode=business.
"""
from __future__ import annotations

import copy
import datetime as dt
import os
import sys

import numpy as np
import torch

from genrec_model.config_loader import stable_hash, to_dict
from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_EMBEDDINGS, ITEM_SIDS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.align.a2po import AlignTask, align_policy
    from genrec_model.align.judge import next_item_examples
    from genrec_model.data.splits import cold_item_mask, split_sequence
    from genrec_model.decode.trie import build_trie
    from genrec_model.model.fit import validator
    from genrec_model.model.item_content import set_catalog
    from genrec_model.model.model_store import load_model, save_model
    from udfs.sequence_fns import item_content, item_table, user_sequences

    cfg = ctx.cfg.align.policy
    root = ctx.cfg.artifact_path("models")
    sft_version = sft_model_version(root, cfg.model_version)
    bundle = load_model(root, sft_version)
    fit_cfg = ctx.cfg.train
    catalog_items = item_table(ctx.read(ITEM_SIDS), ctx.read(CATALOG))
    cold = cold_item_mask(catalog_items["item_id"], ctx.cfg.data.cold_item_share, ctx.cfg.data.cold_seed)
    items = catalog_items[~cold].reset_index(drop=True)
    if (items["codebook_version"].iloc[0] != bundle.manifest["codebook_version"]
            or not np.array_equal(items["item_id"].to_numpy(), bundle.item_ids)):
        raise RuntimeError(f"model {sft_version} was trained on another catalog or codebook than tonight's tables "
                           f"({len(bundle.item_ids)} vs {len(items)} items): retrain before aligning (nothing written)")
    version = f"m-{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}-{stable_hash(to_dict(cfg), 6)}"
    out_dir = ctx.cfg.artifact_path("models", version)
    sequences = user_sequences(ctx.spark, ctx.read(INTERACTIONS), items, os.path.join(out_dir, "train_shards"))
    prefixes = [split_sequence(s, fit_cfg.data.max_history)[0] for s in sequences]
    rng = np.random.default_rng(cfg.seed)
    hists, targets = next_item_examples(prefixes, cfg.max_examples, rng)
    content = (item_content(ctx.read(ITEM_EMBEDDINGS), items["item_id"].tolist())
               if bundle.model.cfg.item_content_dim else None)
    semantic, judge_version = _semantic_reward(ctx, cfg, items, prefixes, content, bundle.manifest["codebook_version"])
    value = _item_value(ctx, cfg.value_column, items["item_id"].tolist())
    codes = bundle.codes
    trie = build_trie(codes, bundle.vocab.level_sizes)
    task = AlignTask(bundle.vocab, codes, trie, hists, targets, fit_cfg.data.max_history, value)
    reference = bundle.model
    if content is not None:
        set_catalog(reference, bundle.vocab, codes, content)
    policy = copy.deepcopy(reference)
    torch.set_num_threads(fit_cfg.trainer.threads)
    log_event("align", "data", sft_model=sft_version, judge=judge_version or "none", mode=cfg.mode,
              pairs=len(targets), users=len(sequences), items=len(items), steps=cfg.steps)
    validate = validator(sequences, bundle.vocab, trie, bundle.vocab.codes_to_tokens(codes), fit_cfg)
    res = align_policy(policy, reference, task, cfg, semantic, validate, progress=fit_cfg.trainer.progress)
    serving = None
    if bundle.serving_model is not None:  # the refit on every event: the same number of steps, no holdout
        serving_ref = bundle.serving_model
        if content is not None:
            set_catalog(serving_ref, bundle.vocab, codes, content)
        serving = copy.deepcopy(serving_ref)
        if res.best_step > 0:
            full_h, full_t = next_item_examples([np.asarray(s) for s in sequences], cfg.max_examples, rng)
            align_policy(serving, serving_ref, AlignTask(bundle.vocab, codes, trie, full_h, full_t,
                                                         fit_cfg.data.max_history, value),
                         cfg, semantic, None, stop_after=res.best_step, progress=False)
    hist = res.history
    summary = {"mode": cfg.mode, "config": to_dict(cfg), "judge_version": judge_version, "best_step": res.best_step,
               "steps": res.steps, "seconds": res.seconds, "sft_valid": res.sft_metrics, "valid": res.best_metrics,
               "validation": res.validation, "pairs": len(targets),
               "mean_sign_agreement": _mean(h["sign_agreement"] for h in hist),
               "mean_lambda": _mean(h["mean_lambda"] for h in hist),
               "final_kl": hist[-1]["kl"] if hist else None, "run_id": ctx.run_id}
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("model_version", "vocab")}
    manifest.update({"aligned_from": sft_version, "align": summary, "valid": res.best_metrics,
                     "config_hash": ctx.cfg.config_hash(), "run_id": ctx.run_id})
    save_model(root, version, policy, bundle.vocab, bundle.item_ids, codes, manifest, serving)
    ctx.counts.update({"pairs": len(targets), "steps": res.steps, "best_step": res.best_step,
                       "align_seconds": res.seconds, "judged_groups": int(sum(h["judged_groups"] for h in hist)),
                       **{k: summary[k] for k in ("mean_sign_agreement", "mean_lambda") if summary[k] is not None},
                       **{f"sft_valid_{k}": v for k, v in res.sft_metrics.items()},
                       **{f"valid_{k}": v for k, v in res.best_metrics.items()}})
    if res.best_step == 0:
        log_event("align", "warning", hint="no alignment step beat the SFT model on validation: the new version "
                                           "holds the SFT weights", sft_valid=res.sft_metrics)
    log_event("align", "model", version=version, aligned_from=sft_version, best_step=res.best_step,
              sft_ndcg=round(res.sft_metrics[cfg.monitor], 5), ndcg=round(res.best_metrics[cfg.monitor], 5))


def sft_model_version(root: str, version: str) -> str:
    """The model alignment starts from: `version`, or the latest one; an aligned model stands for its SFT model,
    so re-running align never stacks alignments silently."""
    from genrec_model.model.artifacts import read_model

    art = read_model(root, version)
    if version:
        return art.version
    return art.manifest.get("aligned_from") or art.version


def _semantic_reward(ctx: JobContext, cfg, items, prefixes, content, codebook_version: str):
    """judge.score as the semantic reward (None in business mode) and the judge version used."""
    if not cfg.uses_judge:
        return None, ""
    from genrec_model.align.judge import ItemSide, SemanticJudge
    from genrec_model.model.artifacts import resolve_version
    from udfs.sequence_fns import item_content

    root = ctx.cfg.artifact_path("judges")
    try:
        version = resolve_version(root, cfg.judge_version)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"align.policy.mode={cfg.mode} needs a judge: run `genrec run judge` first "
                                f"(or align.policy.mode=business)") from e
    judge = SemanticJudge.load(os.path.join(root, version))
    if judge.manifest.get("codebook_version") not in (None, codebook_version):
        raise RuntimeError(f"judge {version} was built on codebook {judge.manifest['codebook_version']!r}, "
                           f"the model on {codebook_version!r}: rerun the judge stage")
    if content is None:
        content = item_content(ctx.read(ITEM_EMBEDDINGS), items["item_id"].tolist())
    side, _ = ItemSide.from_training(content, prefixes, np.stack(items["codes"].to_numpy()))
    return (lambda hists, cands: judge.score(side, hists, cands)), version


def _item_value(ctx: JobContext, column: str, item_ids: list) -> np.ndarray | None:
    """(N,) non-negative item value from a catalog column (the business reward of a hit), None when unset."""
    if not column:
        return None
    catalog = ctx.read(CATALOG)
    if column not in catalog.columns:
        raise ValueError(f"align.policy.value_column={column!r} is not a catalog column ({catalog.columns})")
    values = catalog.select("item_id", column).toPandas().set_index("item_id")[column]
    v = np.asarray([values.get(i) for i in item_ids], dtype=np.float64)
    missing = int(np.isnan(v).sum())
    if missing == len(v) or (v[~np.isnan(v)] < 0).any():
        raise ValueError(f"align.policy.value_column={column!r}: needs non-negative values (missing for {missing} "
                         f"of {len(v)} items)")
    if missing:
        log_event("align", "warning", value_column=column, items_without_value=missing,
                  hint="items without a value get the median value")
        v[np.isnan(v)] = float(np.nanmedian(v))
    return v


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(vals)) if vals else None


if __name__ == "__main__":
    sys.exit(main_for("align", run))
