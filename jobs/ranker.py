"""Stage `ranker`: fits the learned re-ranking of the served candidates (genrec_model/serve/ranker.py).

    genrec run ranker --conf conf/beauty.yaml [recommend.ranker_fit.users=20000]

Decodes a seeded sample of validation users (`recommend.ranker_fit.users`; their validation item held out, as
the recommend job's `valid` split) through the exported model with the recommend job's beam and judge, then fits
the ranker's weights on the users whose held-out item is among their servable candidates. Users whose held-out
item is withheld as new (`data.cold_item_share`) are left out, so nothing that learns sees a new item's events.
Reports, on a held-out half of the sample, Recall/NDCG@k of the log-prob alone, of the judge re-rank
(log-prob + alpha * judge, alpha chosen on the other half) and of a ranker fit on the other half; then fits
on the whole sample and writes `<artifacts>/rankers/<version>/` naming the model, codebook and judge it was fit
for (recommend refuses another model). The pipeline runs it after export when `recommend.serving.ranker` is on.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys

import numpy as np

from genrec_model.config_loader import stable_hash, to_dict
from genrec_model.data.schemas import INTERACTIONS, ITEM_SIDS
from jobs.common import JobContext, log_event, main_for


def run(ctx: JobContext) -> None:
    from genrec_model.data.splits import cold_item_mask
    from genrec_model.decode.beam_search import decode
    from genrec_model.model.artifacts import publish_latest, read_export, read_model
    from genrec_model.model.sid_vocab import history_tokens
    from genrec_model.serve.new_items import pseudo_new_mask
    from genrec_model.serve.ranker import fit_ranker, ranked_metrics, ranker_candidates, target_columns
    from jobs.recommend import decodable_items, load_judge
    from udfs.recommend_fns import beam_configs, build_decoder, known_histories, popularity_per_item
    from udfs.split_fns import history_item_counts
    from udfs.transition_fns import transition_table

    rc, fit = ctx.cfg.recommend, ctx.cfg.recommend.ranker_fit
    model = read_model(ctx.cfg.artifact_path("models"), rc.model_version)
    onnx_dir = model.onnx_dir_for("valid")
    manifest = read_export(onnx_dir)
    item_ids, codes, seen, _, _ = decodable_items(ctx, ctx.read(ITEM_SIDS), onnx_dir)
    interactions = ctx.read(INTERACTIONS)
    users = _validation_sample(interactions, fit.users, fit.seed)
    index = {i: n for n, i in enumerate(item_ids)}
    withheld = cold_item_mask(item_ids, ctx.cfg.data.cold_item_share, ctx.cfg.data.cold_seed)
    target = np.asarray([index.get(t, -1) for t in users["target"]], dtype=np.int64)
    dec = build_decoder(onnx_dir, item_ids, codes, model.max_history, fit.threads, rc.use_gpu,
                        manifest["codebook_version"], seen)
    histories = known_histories(users["history"], dec)
    keep = (target >= 0) & np.asarray([len(h) > 0 for h in histories])
    keep &= ~withheld[np.maximum(target, 0)]
    histories, target = [h for h, k in zip(histories, keep) if k], target[keep]
    if len(target) < 2:
        raise RuntimeError(f"only {len(target)} validation users with a history and a decodable, not withheld "
                           "held-out item: nothing to fit the ranker on (nothing was written)")
    recent = [h[-dec.max_history:] for h in histories]
    beam, _ = beam_configs(rc, manifest["model_config"])
    toks = [history_tokens(h, dec.item_tokens) for h in recent]
    cands, log_prob, level0 = decode(dec.step_model, dec.trie, dec.level_starts, toks, beam, first_level=True)
    data, serving = ctx.cfg.data, rc.serving
    popularity = popularity_per_item(history_item_counts(interactions, ["valid"], None, data.cold_item_share,
                                                         data.cold_seed)["valid"], item_ids)
    pseudo = None
    if serving.new_item_candidates and fit.pseudo_new_share > 0:  # the new-item features' training signal
        pseudo = pseudo_new_mask(item_ids, seen & ~withheld, fit.pseudo_new_share, fit.seed)
        unseen = (cands >= 0) & ~seen[np.maximum(cands, 0)]  # never a target here: they would only teach "new loses"
        cands, log_prob = np.where(unseen, -1, cands), np.where(unseen, -np.inf, log_prob)
        popularity = np.where(pseudo, 0.0, popularity)
        ctx.counts.update({"pseudo_new_items": int(pseudo.sum()), "pseudo_new_targets": int(pseudo[target].sum())})
    judge, side = load_judge(ctx, item_ids, codes)
    tcfg = serving.transitions
    table = transition_table(interactions, "valid", None, item_ids, tcfg, data.cold_item_share, data.cold_seed)
    ctx.counts["transition_pairs"] = table.nnz
    cands, log_prob, feats = ranker_candidates(judge, side.with_popularity(popularity), recent, cands, log_prob,
                                               level0, (table, tcfg), pseudo, serving.new_item_candidates,
                                               serving.new_item_knn)
    valid = (cands >= 0) & (log_prob > -np.inf)
    if serving.filter_seen:
        valid &= ~np.stack([np.isin(c, h) for c, h in zip(cands, histories)])
    cols = target_columns(cands, valid, target)
    half = np.arange(len(target)) % 2 == 0
    new_target = pseudo[target] if pseudo is not None else np.zeros(len(target), dtype=bool)
    report = _holdout_report(feats, valid, cols, half, fit, new_target)
    ranker = fit_ranker(feats, valid, cols, fit.l2)
    ranker.metrics = {**report, **{f"in_sample.{k}": v for k, v in
                                   ranked_metrics(ranker.score(feats, valid), cols, fit.k).items()}}
    version = f"r-{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}-{stable_hash(to_dict(fit), 6)}"
    root = ctx.cfg.artifact_path("rankers")
    ranker.manifest = {"version": version, "model_version": model.version, "codebook_version":
                       manifest["codebook_version"], "judge_version": judge.manifest["version"],
                       "dataset": ctx.cfg.data.dataset, "run_id": ctx.run_id, "users": int(len(target)),
                       "users_target_in_candidates": int((cols >= 0).sum()), "beam_width": beam.beam_width,
                       "candidates": beam.top_k, "transitions": dataclasses.asdict(tcfg),
                       "new_item_candidates": serving.new_item_candidates,
                       "new_item_knn": dataclasses.asdict(serving.new_item_knn),
                       "pseudo_new_share": fit.pseudo_new_share if pseudo is not None else 0.0,
                       "config_hash": ctx.cfg.config_hash()}
    ranker.save(os.path.join(root, version))
    publish_latest(root, version)
    weights = dict(zip(ranker.features, ranker.weights.round(4).tolist()))
    ctx.counts.update({"users": len(target), "users_target_in_candidates": int((cols >= 0).sum()),
                       "users_sampled": len(users), **{k: v for k, v in ranker.metrics.items()},
                       **{f"weight.{f}": w for f, w in weights.items()}})
    log_event("ranker", "written", version=version, model=model.version, users=len(target), weights=weights,
              **{k.replace("@", "_at_"): round(v, 4) for k, v in report.items() if k.startswith("holdout.")})


def _validation_sample(interactions, n: int, seed: int):
    """Up to n users (seeded by user id) with their validation history (item_ids oldest first) and target."""
    from pyspark.sql import functions as F

    from udfs.split_fns import heldout_targets, histories_df

    targets = heldout_targets(interactions, ("valid",)).select("user_id", "target")
    joined = histories_df(interactions, "valid", None).join(targets, on="user_id")
    return joined.orderBy(F.xxhash64("user_id", F.lit(seed)), "user_id").limit(n).toPandas()


def _holdout_report(feats: np.ndarray, valid: np.ndarray, cols: np.ndarray, half: np.ndarray, fit,
                    new_target: np.ndarray) -> dict:
    """Recall/NDCG@k on the second half of the users: log-prob alone, log-prob + alpha * judge (alpha chosen on
    the first half by NDCG@k), the transition score alone (log-prob breaks its ties), and rankers fit on the
    first half: on the judge's features only and on every feature; for the full ranker also on the users whose
    target is a pseudo-new item (new_target (U,)) and the share of its top-k slots holding a new-item candidate."""
    from genrec_model.serve.ranker import FEATURES, JUDGE_FEATURES, fit_ranker, ranked_metrics

    lp, jd, tr = FEATURES.index("log_prob"), FEATURES.index("judge"), FEATURES.index("transition")
    n_judge = len(JUDGE_FEATURES)

    def judge_sum(rows, alpha):
        return np.where(valid[rows], feats[rows, :, lp] + alpha * feats[rows, :, jd], -np.inf)

    a, b = np.flatnonzero(half), np.flatnonzero(~half)
    key = f"ndcg@{fit.k}"
    alpha = max(fit.compare_alphas, key=lambda x: (ranked_metrics(judge_sum(a, x), cols[a], fit.k)[key], -x))
    first_half = fit_ranker(feats[a], valid[a], cols[a], fit.l2)
    judge_only = fit_ranker(feats[a][..., :n_judge], valid[a], cols[a], fit.l2)
    transition = np.where(valid[b], feats[b, :, tr] + 1e-6 * feats[b, :, lp], -np.inf)
    out = {"holdout.users": float(len(b)), "holdout.judge_alpha": float(alpha)}
    for name, scores in (("log_prob", judge_sum(b, 0.0)), ("judge_rerank", judge_sum(b, alpha)),
                         ("transition", transition),
                         ("ranker_judge_features", judge_only.score(feats[b][..., :n_judge], valid[b])),
                         ("ranker", first_half.score(feats[b], valid[b]))):
        out.update({f"holdout.{name}.{m}": v for m, v in ranked_metrics(scores, cols[b], fit.k).items()})
    nb = new_target[b]
    if nb.any():
        scores = first_half.score(feats[b], valid[b])
        out.update({f"holdout.ranker.pseudo_new.{m}": v for m, v in
                    ranked_metrics(scores[nb], cols[b][nb], fit.k).items()})
        top = np.argsort(-scores, axis=1, kind="stable")[:, :fit.k]
        is_new = feats[b][..., FEATURES.index("is_new")] > 0
        placed = np.take_along_axis(np.isfinite(scores), top, axis=1)
        out["holdout.ranker.new_slot_share"] = float(np.take_along_axis(is_new, top, axis=1)[placed].mean())
        out["holdout.pseudo_new_users"] = float(nb.sum())
    return out


if __name__ == "__main__":
    sys.exit(main_for("ranker", run))
