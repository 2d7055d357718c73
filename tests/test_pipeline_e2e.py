"""The whole pipeline on real data (MovieLens-100k from the recbole wheel), small settings.

Checks the tables each stage leaves: counts reconcile, SIDs unique, every user gets exactly one
list per split, a re-run of recommend for the same date replaces it, metrics are in range, and
recommend refuses a model trained on another codebook version. Runs once per Delta backend (the
connector and delta-rs), and checks both runs left the same table contents.
"""
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from genrec_model.config import load_config
from jobs.common import make_context, run_recorded
from jobs.stages import STAGES, stage_runner
from tests.conftest import BACKENDS, require_backend

pytestmark = pytest.mark.spark
REPO = Path(__file__).resolve().parents[1]
WHEEL = REPO / "data" / "recbole-1.2.1-py3-none-any.whl"
FAST = ["embed.batch_size=128", "sids.rqvae.epochs=8", "sids.rqvae.n_levels=2", "sids.rqvae.codebook_size=32",
        "sids.rqvae.hidden_dims=[128, 64]", "sids.rqvae.latent_dim=16",
        "train.model.n_layer=1", "train.model.d_model=32", "train.model.n_head=2", "train.model.d_ff=64",
        "train.trainer.epochs=2", "train.trainer.progress=false", "train.valid_users=50", "train.valid_beam=10",
        "recommend.beam_width=10", "recommend.candidates=10", "recommend.serving.top_k=10",
        "recommend.splits=[serve, test, valid]", "baselines.sasrec_train.max_epochs=2", "run_date=2024-03-01"]


def _run(cfg, spark, stage):
    ctx = make_context(stage, cfg, spark)
    run_recorded(ctx, stage_runner(stage))
    return ctx


# Columns that name a run rather than its results (ids, clocks, versions stamped with the time, hashes
# of a config that differs in lakehouse.delta_mode): left out when the two backends' tables are compared.
VOLATILE = {"run_id", "generated_at", "updated_at", "started_at", "seconds", "config_hash", "model_version",
            "codebook_version"}
DIGESTS: dict[str, dict] = {}


def _digest(cfg, name):
    """Row count and a hash of the table's sorted rows (volatile columns dropped), plus its layout."""
    table = DeltaTable(os.path.join(cfg.lakehouse_root(), name))
    df = table.to_pandas()
    df = df[[c for c in df.columns if c not in VOLATILE]]
    for col in df.columns:  # aggregates summed in a different task order differ in the last bits
        if df[col].dtype.kind == "f":
            df[col] = df[col].map(lambda v: float(f"{v:.12g}"))
    rows = sorted(json.dumps(r, sort_keys=True, default=str) for r in df.to_dict("records"))
    meta = table.metadata()
    return {"rows": len(rows), "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
            "schema": table.schema().to_json(), "partition_by": meta.partition_columns,
            "properties": meta.configuration}


@pytest.fixture(scope="module", params=BACKENDS)
def pipeline(spark, tmp_path_factory, request):
    if not WHEEL.is_file():
        pytest.skip("MovieLens-100k wheel not downloaded (scripts/setup_env.sh fetches it)")
    backend = require_backend(spark, request.param)
    root = tmp_path_factory.mktemp(f"e2e-{backend}")
    cfg = load_config(REPO / "conf" / "local.yaml", [f"data.path={WHEEL}", f"lakehouse.root={root / 'lake'}",
                                                     f"artifacts.root={root / 'art'}", *FAST,
                                                     f"lakehouse.delta_mode={backend}"])
    contexts = {stage: _run(cfg, spark, stage) for stage in STAGES}
    assert {c.store.backend for c in contexts.values()} == {backend}
    DIGESTS[backend] = {name: _digest(cfg, name) for name in
                        ("catalog", "interactions", "rejects", "item_embeddings", "item_sids", "recommendations",
                         "metrics")}
    return cfg, contexts


def _overrides(cfg):
    """The overrides a test's extra config needs to stay on the pipeline's lakehouse and backend."""
    return [f"data.path={WHEEL}", f"lakehouse.root={cfg.lakehouse.root}", f"artifacts.root={cfg.artifacts.root}",
            *FAST, f"lakehouse.delta_mode={cfg.lakehouse.delta_mode}"]


def _table(cfg, name):
    return DeltaTable(os.path.join(cfg.lakehouse_root(), name)).to_pandas()


def test_ingest_counts_reconcile(pipeline):
    cfg, ctx = pipeline
    c = ctx["ingest"].counts
    assert c["raw_items"] == 1682 == c["catalog"] + c["item_rejects"]
    assert c["raw_interactions"] == 100000 == c["interactions"] + c["interaction_rejects"]
    assert len(_table(cfg, "catalog")) == c["catalog"]


def test_sids_unique_and_stable(pipeline, spark):
    cfg, ctx = pipeline
    sids = _table(cfg, "item_sids")
    assert len(sids) == 1682 and sids["sid"].is_unique and sids["codebook_version"].nunique() == 1
    again = _run(cfg, spark, "sids")  # nothing changed: same codebook, same SIDs
    assert again.counts["codebook_reused"] == 1.0 and again.counts["items_new_codes"] == 0
    sids2 = _table(cfg, "item_sids")
    assert sids.set_index("item_id")["sid"].to_dict() == sids2.set_index("item_id")["sid"].to_dict()


def test_recommendations_one_list_per_user_and_rerun_replaces(pipeline, spark):
    cfg, ctx = pipeline
    all_models = _table(cfg, "recommendations")
    assert set(all_models["model"]) == {"genrec", "popularity", "sasrec"}
    assert set(all_models[all_models["model"] != "genrec"]["split"]) == {"test", "valid"}  # baselines: eval only
    recs = all_models[all_models["model"] == "genrec"]
    for split, part in recs.groupby("split"):
        assert part["user_id"].is_unique and len(part) == 943
    serve = recs[recs["split"] == "serve"]
    assert all(len(r) == 10 for r in serve["recs"])
    assert not serve["is_fallback"].any()
    rerun = _run(cfg, spark, "recommend")
    again = _table(cfg, "recommendations")
    assert len(again) == len(all_models)  # replaced, never duplicated
    # the job's counts are of its own lists, not of the baselines' lists stored under the same date
    assert rerun.counts["users"] == len(recs)
    assert rerun.counts["fallback_users"] == int(recs["is_fallback"].sum())


def test_metrics_written_in_range(pipeline):
    cfg, ctx = pipeline
    m = _table(cfg, "metrics")
    for model in ("genrec", "popularity", "sasrec"):
        rows = m[(m["split"] == "test") & (m["model"] == model)]
        recall = rows[rows["metric"] == "recall"].set_index("k")["value"]
        assert 0.0 <= recall[1] <= recall[5] <= recall[10] <= 1.0
        assert rows[rows["metric"] == "users"]["value"].item() == 943


def test_run_date_is_a_date_in_every_table_that_has_it(pipeline):
    cfg, ctx = pipeline
    for name in ("rejects", "recommendations", "metrics", "job_runs"):
        table = DeltaTable(os.path.join(cfg.lakehouse_root(), name))
        assert table.schema().to_arrow().field("run_date").type == pa.date32(), name
        assert set(table.to_pandas()["run_date"]) <= {dt.date(2024, 3, 1)}, name  # rejects: none here
    assert not any(k.startswith("migrated.") for c in ctx.values() for k in c.counts)  # new tables: nothing to do


def test_category_fusion_and_unconstrained_variants(pipeline, spark):
    """Ablation knobs through the job: category-prior fusion diversifies the lists; without the trie
    some decoded tuples are not catalog SIDs (short lists, no fill), never a crash."""
    cfg, ctx = pipeline
    base = [*_overrides(cfg), "recommend.splits=[test]"]
    # weight 1: the category prior alone orders each list's candidates (greedy, a penalty per category
    # already placed), so no list can come out less diverse than the model's own order of the same items
    variants = {"genrec-diverse": ["recommend.serving.fusion_weight=1.0", "recommend.serving.prior=category"],
                "genrec-free": ["recommend.constrained=false", "recommend.serving.fill_with_popular=false"]}
    for name, extra in variants.items():
        _run(load_config(REPO / "conf" / "local.yaml", [*base, f"recommend.model_name={name}", *extra]), spark,
             "recommend")
    evaluated = _run(cfg, spark, "evaluate")
    assert evaluated.counts["category_level"] == 0  # MovieLens genres: no shared root
    m = _table(cfg, "metrics")
    test = m[m["split"] == "test"].set_index(["model", "metric", "k"])["value"]
    ild = "intra_list_diversity"
    # the Spark average may sum lists in another order: equal lists can differ in the last bit
    assert test[("genrec-diverse", ild, 10)] >= test[("genrec", ild, 10)] - 1e-12
    recs = _table(cfg, "recommendations")
    free = recs[(recs["model"] == "genrec-free") & (recs["split"] == "test")]
    catalog = set(_table(cfg, "catalog")["item_id"])
    lists = [[r["item_id"] for r in row] for row in free["recs"]]
    assert len(free) == 943 and not free["is_fallback"].any()  # every user decoded, no crash
    assert all(set(lst) <= catalog and len(lst) == len(set(lst)) <= 10 for lst in lists)  # only catalog items
    constrained = recs[(recs["model"] == "genrec") & (recs["split"] == "test")]
    # without the trie nothing fills a list whose decoded tuples missed the catalog: never longer than
    # the constrained (popularity-filled) lists
    assert sum(map(len, lists)) <= sum(len(r) for r in constrained["recs"])


def test_judge_stage_writes_an_evaluated_artifact(pipeline, spark):
    """`genrec run judge` on the pipeline's tables: a versioned judge with AUCs of held-out next items."""
    from genrec_model.align.judge import SemanticJudge

    cfg, _ = pipeline
    judge_cfg = load_config(REPO / "conf" / "local.yaml", [*_overrides(cfg), "align.judge.epochs=1",
                                                           "align.judge.max_train_examples=5000"])
    ctx = _run(judge_cfg, spark, "judge")
    assert ctx.counts["train_pairs"] == 5000 and ctx.counts["held_out"] > 900
    root = cfg.artifact_path("judges")
    judge = SemanticJudge.load(os.path.join(root, open(os.path.join(root, "LATEST")).read()))
    assert 0.5 < judge.metrics["auc_random.judge"] <= 1.0  # better than chance on real next items
    assert set(judge.metrics["mean_aspect_weights"]) == {"profile", "context", "closest", "novelty", "popularity"}


def test_ranker_stage_fits_on_validation_and_recommend_serves_it(pipeline, spark):
    """`genrec run ranker` after the judge: weights fit on validation users' decoded candidates for this model,
    a held-out-half report; recommend with serving.ranker re-ranks by it and refuses a ranker of another model."""
    from genrec_model.model.artifacts import read_model
    from genrec_model.serve.ranker import FEATURES, Ranker

    cfg, _ = pipeline
    base = [*_overrides(cfg), "align.judge.epochs=1", "align.judge.max_train_examples=5000"]
    if not os.path.exists(cfg.artifact_path("judges")):
        _run(load_config(REPO / "conf" / "local.yaml", base), spark, "judge")
    over = [*base, "recommend.ranker_fit.users=400", "recommend.serving.ranker=true"]
    fit = _run(load_config(REPO / "conf" / "local.yaml", over), spark, "ranker")
    root = cfg.artifact_path("rankers")
    version = open(os.path.join(root, "LATEST")).read()
    ranker = Ranker.load(os.path.join(root, version))
    model = read_model(cfg.artifact_path("models")).version
    assert ranker.manifest["model_version"] == model and ranker.features == FEATURES
    assert 0 < fit.counts["users"] <= 400 and 0 < fit.counts["users_target_in_candidates"] <= fit.counts["users"]
    for name in ("log_prob", "judge_rerank", "transition", "ranker_judge_features", "ranker"):
        assert 0.0 <= ranker.metrics[f"holdout.{name}.recall@10"] <= 1.0
    assert fit.counts["transition_pairs"] > 0 and ranker.manifest["transitions"]["window"] == 5
    rec = _run(load_config(REPO / "conf" / "local.yaml", [*over, "recommend.model_name=genrec-ranked",
                                                           "recommend.splits=[valid]"]), spark, "recommend")
    assert rec.counts["ranker_users"] == fit.counts["users"] and rec.counts["valid.transition_pairs"] > 0
    lists = _table(cfg, "recommendations")
    ranked = lists[(lists["model"] == "genrec-ranked") & (lists["split"] == "valid")]
    plain = lists[(lists["model"] == "genrec") & (lists["split"] == "valid")]
    assert len(ranked) == len(plain) > 0
    with pytest.raises(RuntimeError, match="transition features counted with"):
        _run(load_config(REPO / "conf" / "local.yaml", [*over, "recommend.serving.transitions.window=2",
                                                         "recommend.model_name=genrec-ranked"]), spark, "recommend")
    ranker.manifest["model_version"] = "m-another"
    ranker.save(os.path.join(root, "r-other"))
    with pytest.raises(RuntimeError, match="was fit for model m-another"):
        _run(load_config(REPO / "conf" / "local.yaml", [*over, "recommend.ranker_version=r-other",
                                                         "recommend.model_name=genrec-ranked"]), spark, "recommend")
    # new-item candidates: the fit draws warm items as pseudo-new; recommend refuses a ranker fit without them
    news = [*over, "recommend.serving.new_item_candidates=5", "recommend.ranker_fit.pseudo_new_share=0.2"]
    fit = _run(load_config(REPO / "conf" / "local.yaml", news), spark, "ranker")
    assert fit.counts["pseudo_new_items"] > 0 and fit.counts["pseudo_new_targets"] > 0
    ranker = Ranker.load(os.path.join(root, open(os.path.join(root, "LATEST")).read()))
    assert ranker.manifest["new_item_candidates"] == 5 and ranker.manifest["pseudo_new_share"] == 0.2
    assert 0.0 < ranker.metrics["holdout.ranker.new_slot_share"] < 1.0
    with pytest.raises(RuntimeError, match="new_item_candidates=5"):
        _run(load_config(REPO / "conf" / "local.yaml", [*over, "recommend.model_name=genrec-ranked"]), spark,
             "recommend")


def test_align_stage_writes_an_aligned_version_that_exports(pipeline, spark):
    """`genrec run align` after the judge: a new model version aligned from the SFT one, exported through the
    same parity gate; a second align starts from the SFT model again."""
    from genrec_model.model.artifacts import publish_latest, read_model
    from jobs.align import sft_model_version

    cfg, _ = pipeline
    models = cfg.artifact_path("models")
    sft = read_model(models).version
    over = [*_overrides(cfg), "align.policy.steps=4", "align.policy.valid_every=2", "align.policy.users_per_step=8",
            "align.policy.group_size=4", "align.policy.judge_share=1.0"]
    try:
        ctx = _run(load_config(REPO / "conf" / "local.yaml", over), spark, "align")
        aligned = read_model(models)
        assert aligned.version != sft and aligned.manifest["aligned_from"] == sft
        assert ctx.counts["steps"] == 4 and ctx.counts["judged_groups"] == 4 * 8
        assert ctx.counts["best_step"] in (0, 2, 4)
        # defined only when some judged group found the observed item (the business advantage is 0 elsewhere)
        assert 0 <= ctx.counts.get("mean_sign_agreement", 0.5) <= 1
        assert [v["step"] for v in aligned.manifest["align"]["validation"]] == [0, 2, 4]
        assert sft_model_version(models, "") == sft  # never stacks alignments silently
        export = _run(load_config(REPO / "conf" / "local.yaml", _overrides(cfg)), spark, "export")
        assert export.counts["onnx.parity_max_abs_diff"] <= 1e-4
    finally:
        publish_latest(models, sft)  # the tests after this one run on the SFT model


def test_train_on_two_torch_distributor_ranks(pipeline, spark):
    """train.distributed.num_processes=2: TorchDistributor runs two DDP ranks, each on its own history shard;
    same data counted, a model saved the same way (rank 0 alone writes), and it exports."""
    from genrec_model.model.artifacts import publish_latest, read_model

    cfg, ctx = pipeline
    if cfg.lakehouse.delta_mode != BACKENDS[0]:
        pytest.skip("training reads no Delta table directly: one backend is enough")
    models = cfg.artifact_path("models")
    single = read_model(models)
    try:
        dist = _run(load_config(REPO / "conf" / "local.yaml", [*_overrides(cfg), "train.distributed.num_processes=2"]),
                    spark, "train")
        model = read_model(models)
        assert model.version != single.version and model.manifest["train_processes"] == 2
        assert model.manifest["hardware"]["torch_cpu_capability"] == single.manifest["hardware"]["torch_cpu_capability"]
        assert dist.counts["train_processes"] == 2 and dist.counts["train_samples_per_s_per_process"] > 0
        for key in ("users", "events", "items"):
            assert dist.counts[key] == ctx["train"].counts[key], key
        assert 0.0 <= dist.counts["valid_recall@10"] <= 1.0
        files = set(os.listdir(os.path.join(models, model.version)))
        assert {"best.pt", "history.json"} <= files and "_fitted_rank0.pt" not in files
        shards = sorted(os.listdir(os.path.join(models, model.version, "train_shards")))
        assert [s for s in shards if s.startswith("shard=")] == ["shard=0", "shard=1"]
        export = _run(load_config(REPO / "conf" / "local.yaml", _overrides(cfg)), spark, "export")
        assert export.counts["onnx.parity_max_abs_diff"] <= 1e-4
    finally:
        publish_latest(models, single.version)  # the tests after this one run on the single-process model


def test_retrain_new_codebook_then_recommend_refuses(pipeline, spark):
    """Runs last: a codebook retrain makes the trained model stale; recommend must write nothing."""
    cfg, ctx = pipeline
    old_version = _table(cfg, "item_sids")["codebook_version"].iloc[0]
    retrain = load_config(REPO / "conf" / "local.yaml", [*_overrides(cfg), "sids.retrain=true", "sids.rqvae.seed=1"])
    _run(retrain, spark, "sids")
    sids = _table(cfg, "item_sids")
    assert sids["codebook_version"].nunique() == 1 and sids["codebook_version"].iloc[0] != old_version
    assert sids["sid"].is_unique
    before = DeltaTable(os.path.join(cfg.lakehouse_root(), "recommendations")).version()
    with pytest.raises(RuntimeError, match="trained on codebook .* but item_sids holds"):
        _run(cfg, spark, "recommend")
    assert DeltaTable(os.path.join(cfg.lakehouse_root(), "recommendations")).version() == before
    runs = _table(cfg, "job_runs")
    assert "failed" in set(runs[runs["job"] == "recommend"]["status"])
    assert len(os.listdir(cfg.artifact_path("codebooks"))) == 2


def test_both_backends_wrote_the_same_tables():
    """The whole pipeline written through the connector and through delta-rs: same rows (volatile
    run columns aside), schema, partitioning and table properties in every table."""
    if set(DIGESTS) != set(BACKENDS):
        pytest.skip(f"needs the pipeline on both backends in this session, ran: {sorted(DIGESTS)}")
    native, delta_rs = DIGESTS["native"], DIGESTS["delta_rs"]
    differing = {name: (native[name], delta_rs[name]) for name in native if native[name] != delta_rs[name]}
    assert not differing, json.dumps(differing, indent=1)[:4000]
    assert native["recommendations"]["properties"].get("delta.enableChangeDataFeed") == "true"
