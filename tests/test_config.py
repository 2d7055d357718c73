import dataclasses
from pathlib import Path

import pytest

from genrec_model.config import GenrecConfig, load_config
from genrec_model.config_loader import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
SHIPPED = sorted(p.stem for p in CONF.glob("*.yaml"))


def _yaml(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def _error(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides))
    return str(err.value)


def test_yaml_and_overrides_are_typed(tmp_path):
    p = _yaml(tmp_path, "data: {dataset: d, path: /x, format: lcrec}\nspark: {shuffle_partitions: 3}\n")
    cfg = load_config(p, ["spark.shuffle_partitions=5", "run_date=2024-02-03", "lakehouse.root=/lh",
                          "spark.extra_conf={a: b}", "data.max_timestamp=10"])
    assert isinstance(cfg, GenrecConfig)
    assert cfg.spark.shuffle_partitions == 5
    assert cfg.data.format == "lcrec" and cfg.data.max_timestamp == 10
    assert cfg.run_date == "2024-02-03"  # YAML reads it as a date; the str field gets the ISO text
    assert cfg.spark.extra_conf == {"a": "b"}
    assert cfg.lakehouse_root() == "/lh"


@pytest.mark.parametrize("override, message", [
    ("spark.shuffle_partitions=abc", "spark.shuffle_partitions: expected int, got str 'abc'"),
    ("spark.shuffle_partitions=true", "expected int, got bool"),
    ("spark.mastr=local", "unknown config key(s) spark.mastr"),
    ("nosuchsection.x=1", "unknown config key(s) nosuchsection"),
    ("data.format=parquet", "data.format: expected one of"),
    ("run_date=2024-13-01", "is not a YYYY-MM-DD date"),
    ("run_date=2024-W01-1", "is not a YYYY-MM-DD date"),  # Python accepts ISO week dates; run dates do not
    ("start_date=2024-01-05", "start_date and end_date go together"),
    ("spark", "must look like key=value"),
    ("train.trainer.epoch=5", "unknown config key(s) train.trainer.epoch"),
    ("train.trainer.epochs=five", "train.trainer.epochs: expected int, got str 'five'"),
    ("train.trainer.lr=1e-4x", "train.trainer.lr: expected float, got str '1e-4x'"),
    ("align.policy.mode=sum", "align.policy.mode: expected one of"),
    ("train.model.d_model=12.5", "train.model.d_model: expected int, got float 12.5"),
    ("evaluate.ks=[5, x]", "evaluate.ks[1]: expected int, got str 'x'"),
    ("evaluate.ks=5", "evaluate.ks: expected a list"),
    ("data.category_level=top", "data.category_level: expected int, got str 'top'"),
    ("recommend.use_gpu=maybe", "recommend.use_gpu: expected bool, got str 'maybe'"),
    ("recommend.serving=3", "recommend.serving: expected a mapping for section ServingConfig"),
    ("data.path.x=1", "is not a section"),
    ("sids.scheme=rq", "sids.scheme: expected one of ['dedup', 'hybrid']"),
    ("recommend.splits=[serve, tset]", "recommend.splits: unknown ['tset']"),
])
def test_bad_values_give_clear_errors(tmp_path, override, message):
    assert message in _error(_yaml(tmp_path, "data: {dataset: d, path: /x}\n"), [override])


def test_bad_yaml_values_name_the_dotted_key(tmp_path):
    assert "unknown config key(s) train.trainer.epoch " in _error(
        _yaml(tmp_path, "data: {dataset: d, path: /x}\ntrain: {trainer: {epoch: 3}}\n"))
    assert "baselines.sasrec_train.lr: expected float, got str 'fast'" in _error(
        _yaml(tmp_path, "data: {dataset: d, path: /x}\nbaselines: {sasrec_train: {lr: fast}}\n"))
    assert "train.data.level_weights[1]: expected float, got str 'x'" in _error(
        _yaml(tmp_path, "data: {dataset: d, path: /x}\ntrain: {data: {level_weights: [1, x]}}\n"))


def test_required_key_and_unknown_yaml_key(tmp_path):
    with pytest.raises(ConfigError, match="data.path is required"):
        load_config(_yaml(tmp_path, "data: {dataset: d}\n"))
    with pytest.raises(ConfigError, match="unknown config key.*data.pth"):
        load_config(_yaml(tmp_path, "data: {dataset: d, path: /x, pth: 1}\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(_yaml(tmp_path, "extends: missing.yaml\ndata: {dataset: d, path: /x}\n"))


def test_overrides_apply_with_their_types_and_leave_siblings_alone():
    cfg = load_config(CONF / "beauty.yaml", ["train.trainer.lr=1", "train.model.d_model=256",
                                             "recommend.splits=[test]", "recommend.use_gpu=null",
                                             "data.category_level=2", "embed.template=['{title}']"])
    assert cfg.train.trainer.lr == 1.0 and isinstance(cfg.train.trainer.lr, float)  # int -> float, lossless
    assert load_config(CONF / "beauty.yaml", ["align.policy.lr=1e-4"]).align.policy.lr == 1e-4  # YAML: a str
    assert cfg.train.model.d_model == 256
    assert (cfg.train.model.n_layer, cfg.train.model.n_head, cfg.train.model.d_ff) == (2, 4, 512)  # untouched
    assert cfg.train.trainer.batch_size == 128 and cfg.train.trainer.epochs == 16
    assert cfg.recommend.splits == ["test"] and cfg.recommend.use_gpu is None
    assert cfg.data.category_level == 2 and cfg.embed.template == ["{title}"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.path = "/elsewhere"


def test_extends_merges_sections_key_by_key():
    local, beauty = load_config(CONF / "local.yaml"), load_config(CONF / "beauty.yaml")
    assert (beauty.spark.master, beauty.spark.shuffle_partitions) == ("local[2]", 8)  # from local.yaml
    assert beauty.sids.rqvae.epochs == 80 != local.sids.rqvae.epochs == 40             # its own value wins
    assert beauty.sids.rqvae.kmeans_iters == local.sids.rqvae.kmeans_iters == 25        # neither sets it
    assert local.baselines.sasrec_train.max_epochs == 20                                # the demo's cap
    assert beauty.baselines.sasrec_train.patience == 5 and beauty.baselines.sasrec_train.threads == 1
    assert beauty.lakehouse.root == "./lakehouse/beauty" and local.lakehouse.root == "./lakehouse"


def test_backfill_dates_and_hash():
    cfg = load_config(CONF / "local.yaml", ["start_date=2024-02-27", "end_date=2024-03-01"])
    assert cfg.run_dates() == ["2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01"]
    same = load_config(CONF / "local.yaml", ["run_date=2020-01-01"])
    other = load_config(CONF / "local.yaml", ["data.max_text_chars=10"])
    assert cfg.config_hash() == same.config_hash() != other.config_hash()
    assert load_config(CONF / "local.yaml", ["spark.shuffle_partitions=64"]).config_hash() == same.config_hash()
    with pytest.raises(ConfigError, match="start_date 2024-03-02 is after end_date 2024-03-01"):
        load_config(CONF / "local.yaml", ["start_date=2024-03-02", "end_date=2024-03-01"])


def test_every_shipped_config_is_checked_here():
    assert SHIPPED == sorted(FORMATS)


FORMATS = {"local": ("ml100k_atomic", "data/recbole-1.2.1-py3-none-any.whl"),
           "beauty": ("amazon_p5", "../shared/data/amazon2014-beauty"),
           "scientific": ("lcrec", "../shared/data/amazon-scientific"),
           "movielens": ("movielens_csv", "../shared/data/movielens-latest-small"),
           "cluster.example": ("amazon_p5", "s3a://my-bucket/raw/amazon2014-beauty")}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load_with_their_dataset_and_no_derived_values(name):
    cfg = load_config(CONF / f"{name}.yaml")
    assert (cfg.data.format, cfg.data.path) == FORMATS[name]
    # derived from the data by the jobs: a value in a shipped config would be an error (below)
    assert cfg.train.model.vocab_size == 0 and cfg.baselines.sasrec.n_items == 0 and cfg.sids.rqvae.input_dim == 0
    # the README's model recipe: hybrid SIDs with one semantic level, beam >= candidates >= served top_k
    assert (cfg.sids.scheme, cfg.sids.prefix_levels) == ("hybrid", 1)
    assert cfg.recommend.serving.top_k <= cfg.recommend.candidates <= cfg.recommend.beam_width
    assert cfg.recommend.splits == ["serve", "test", "valid"]


@pytest.mark.parametrize("name", ["beauty", "scientific", "movielens"])
def test_dataset_configs_share_the_frozen_beauty_recipe(name):
    cfg = load_config(CONF / f"{name}.yaml")
    m, t = cfg.train.model, cfg.train.trainer
    assert (m.n_layer, m.n_head, m.d_model, m.d_ff) == (2, 4, 128, 512)
    assert (t.lr, t.batch_size, t.epochs, t.patience) == (0.002, 128, 16, 5)
    assert cfg.sids.rqvae.codebook_size == 256 and cfg.sids.rqvae.n_levels == 3
    assert (cfg.recommend.beam_width, cfg.recommend.candidates) == (100, 100)
    assert (cfg.recommend.serving.top_k, cfg.recommend.serving.filter_seen) == (20, True)
    assert cfg.baselines.models == ["popularity", "sasrec", "content_knn", "transition"]
    assert cfg.baselines.sasrec.dropout == 0.2
    assert cfg.baselines.sasrec.max_len == 50  # RecBole's SASRec-CE (issue #13)
    assert (cfg.data.cold_item_share, cfg.data.cold_seed) == (0.05, 0)  # cold-start protocol: warm / cold segments
    assert m.dropout == {"beauty": 0.2, "scientific": 0.3, "movielens": 0.1}[name]


def test_beauty_config_as_the_readme_states_it():
    cfg = load_config(CONF / "beauty.yaml")
    assert cfg.data.dataset == "beauty" and cfg.train.valid_users == 3000
    assert cfg.evaluate.ks == [1, 5, 10, 20] and cfg.evaluate.diversity_k == 10  # R@5/10/20, coverage@10


@pytest.mark.parametrize("name", ["beauty", "scientific", "movielens"])
def test_frozen_configs_budget_in_epochs_and_let_sasrec_converge(name):
    """The same config gives the same model on a busy or an idle machine: no wall-clock budgets; and the
    SASRec baseline stops on validation (README: patience 5, ~35 epochs on Beauty), not at the demo's cap."""
    cfg = load_config(CONF / f"{name}.yaml")
    assert cfg.train.trainer.max_minutes == float("inf") and cfg.baselines.sasrec_train.time_budget_s == float("inf")
    assert cfg.baselines.sasrec_train.max_epochs >= 35 + cfg.baselines.sasrec_train.patience


def test_demo_and_cluster_configs():
    local = load_config(CONF / "local.yaml")
    assert (local.data.dataset, local.spark.master, local.sids.rqvae.codebook_size) == ("ml-100k", "local[2]", 32)
    assert (local.train.trainer.epochs, local.train.trainer.patience, local.train.valid_users) == (10, 3, 500)
    assert local.train.trainer.max_minutes == float("inf")
    cluster = load_config(CONF / "cluster.example.yaml")
    assert cluster.spark.extra_conf["spark.task.cpus"] == "2" and cluster.spark.shuffle_partitions == 400
    assert cluster.lakehouse.delta_mode == "auto" and cluster.data.input_partitions == 64
    assert cluster.lakehouse_root() == "s3a://my-bucket/lakehouse/genrec"  # URIs are kept, not made local paths
    assert cluster.artifact_path("models", "v1") == "s3a://my-bucket/artifacts/genrec/models/v1"
    assert Path(local.lakehouse_root()).is_absolute()


@pytest.mark.parametrize("key, value", [("train.model.vocab_size", 5000), ("baselines.sasrec.n_items", 12101),
                                        ("sids.rqvae.input_dim", 384)])
def test_derived_fields_cannot_be_set(key, value):
    message = _error(CONF / "beauty.yaml", [f"{key}={value}"])
    assert f"{key}={value}: derived from" in message and "leave it 0" in message


def test_recommend_widths_are_checked_at_load():
    assert "need serving.top_k <= candidates <= beam_width" in _error(CONF / "beauty.yaml",
                                                                       ["recommend.beam_width=10"])
    assert load_config(CONF / "beauty.yaml", ["recommend.beam_width=10", "recommend.candidates=10",
                                              "recommend.serving.top_k=10"]).recommend.beam_width == 10


def test_prefix_levels_under_dedup_is_an_error():
    message = _error(CONF / "local.yaml", ["sids.scheme=dedup"])  # local.yaml sets prefix_levels: 1
    assert "sids.prefix_levels=1" in message and "sids.scheme=dedup" in message
    cfg = load_config(CONF / "local.yaml", ["sids.scheme=dedup", "sids.prefix_levels=null"])
    assert cfg.sids.scheme == "dedup" and cfg.sids.prefix_levels is None


def test_prefix_levels_must_fit_the_rqvae_levels():
    assert "sids.prefix_levels=4 must be in [0, sids.rqvae.n_levels=3]" in _error(
        CONF / "local.yaml", ["sids.prefix_levels=4"])
    assert load_config(CONF / "local.yaml", ["sids.prefix_levels=4", "sids.rqvae.n_levels=4"]).sids.prefix_levels == 4
    assert load_config(CONF / "local.yaml", ["sids.prefix_levels=0"]).sids.prefix_levels == 0


def test_pipeline_runs_the_judge_only_when_lists_are_reranked_by_it():
    from jobs.pipeline import pipeline_stages
    from jobs.stages import STAGES

    beauty = load_config(CONF / "beauty.yaml", ["recommend.serving.ranker=false", "recommend.serving.judge_weight=1.5"])
    stages = pipeline_stages(beauty)
    assert stages.index("judge") < stages.index("export") and [s for s in stages if s != "judge"] == STAGES
    assert pipeline_stages(load_config(CONF / "local.yaml")) == STAGES


def test_pipeline_fits_the_ranker_after_export_when_lists_use_it():
    from jobs.pipeline import pipeline_stages
    from jobs.stages import STAGES

    cfg = load_config(CONF / "beauty.yaml", ["recommend.serving.judge_weight=0", "recommend.serving.ranker=true"])
    stages = pipeline_stages(cfg)
    assert stages.index("judge") < stages.index("export") < stages.index("ranker") < stages.index("recommend")
    assert [s for s in stages if s not in ("judge", "ranker")] == STAGES
    assert "two re-rankings" in _error(CONF / "beauty.yaml", ["recommend.serving.judge_weight=1",
                                                             "recommend.serving.ranker=true"])
