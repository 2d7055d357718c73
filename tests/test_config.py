from pathlib import Path

import pytest

from genrec_model.config import GenrecConfig, load_config
from genrec_model.config_loader import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def _yaml(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


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
    ("start_date=2024-01-05", "start_date and end_date go together"),
    ("spark", "must look like key=value"),
])
def test_bad_values_give_clear_errors(tmp_path, override, message):
    p = _yaml(tmp_path, "data: {dataset: d, path: /x}\n")
    with pytest.raises(ConfigError) as err:
        load_config(p, [override])
    assert message in str(err.value)


def test_required_key_and_unknown_yaml_key(tmp_path):
    with pytest.raises(ConfigError, match="data.path is required"):
        load_config(_yaml(tmp_path, "data: {dataset: d}\n"))
    with pytest.raises(ConfigError, match="unknown config key.*data.pth"):
        load_config(_yaml(tmp_path, "data: {dataset: d, path: /x, pth: 1}\n"))


def test_backfill_dates_and_hash():
    cfg = load_config(CONF / "local.yaml", ["start_date=2024-02-27", "end_date=2024-03-01"])
    assert cfg.run_dates() == ["2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01"]
    same = load_config(CONF / "local.yaml", ["run_date=2020-01-01"])
    other = load_config(CONF / "local.yaml", ["data.max_text_chars=10"])
    assert cfg.config_hash() == same.config_hash() != other.config_hash()


@pytest.mark.parametrize("name", ["local", "beauty", "scientific", "movielens", "cluster.example"])
def test_shipped_configs_load(name):
    cfg = load_config(CONF / f"{name}.yaml")
    assert cfg.data.dataset and cfg.data.path
