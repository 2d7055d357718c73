"""embed.model_name names the weights embed.model_path really loads (it is derived from them, or checked)."""
import shutil

import pytest
from deltalake import DeltaTable

from genrec_model.catalog.text_encoder import (
    DEFAULT_MODEL_NAME,
    default_model_path,
    loaded_model_name,
    resolve_model_name,
    weights_fingerprint,
)
from genrec_model.config import load_config

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _tiny_bert(folder, seed: int) -> str:
    """A random 2-layer BERT with MiniLM's tokenizer: other weights, same text interface."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(f"{default_model_path()}/{name}", folder / name)
    return str(folder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("m") / "tiny-bert", seed=0)


def test_default_weights_keep_the_published_name():
    assert loaded_model_name(default_model_path()) == DEFAULT_MODEL_NAME
    assert resolve_model_name(default_model_path(), "") == DEFAULT_MODEL_NAME
    assert resolve_model_name(default_model_path(), DEFAULT_MODEL_NAME) == DEFAULT_MODEL_NAME


def test_a_copy_of_the_default_weights_is_the_default_model(tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(default_model_path(), copy)
    assert loaded_model_name(str(copy)) == DEFAULT_MODEL_NAME


def test_other_weights_get_their_own_name(tiny, tmp_path):
    name = loaded_model_name(tiny)
    assert name == f"tiny-bert@{weights_fingerprint(tiny)[:12]}"
    assert weights_fingerprint(tiny) != weights_fingerprint(default_model_path())
    retrained = _tiny_bert(tmp_path / "tiny-bert", seed=1)  # same folder name, other weights
    assert loaded_model_name(retrained) != name and loaded_model_name(retrained).startswith("tiny-bert@")


def test_a_declared_name_must_match_the_loaded_weights(tiny):
    with pytest.raises(ValueError, match=r"embed.model_name='sentence-transformers/all-MiniLM-L6-v2' does not "
                                         r"name the weights loaded from embed.model_path"):
        resolve_model_name(tiny, DEFAULT_MODEL_NAME)
    with pytest.raises(ValueError, match="embed.model_name='BAAI/bge-small-en'"):
        resolve_model_name(default_model_path(), "BAAI/bge-small-en")
    assert resolve_model_name(tiny, loaded_model_name(tiny)) == loaded_model_name(tiny)


def test_a_folder_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="holds no model weights"):
        weights_fingerprint(str(tmp_path))


def test_default_config_declares_no_name():
    assert load_config(None, ["data.dataset=t", "data.path=/x"]).embed.model_name == ""


@pytest.mark.spark
def test_embed_job_records_the_loaded_model_and_reembeds_when_it_changes(spark, tmp_path, tiny):
    from genrec_model.data.schemas import CATALOG, ITEM_EMBEDDINGS
    from jobs.common import make_context, run_recorded
    from jobs.embed import run as run_embed
    from tests.test_embed_sids_jobs import ITEMS, _catalog

    base = ["data.dataset=t", "data.path=/unused", f"lakehouse.root={tmp_path / 'lake'}",
            f"artifacts.root={tmp_path / 'art'}"]
    ctx = make_context("embed", load_config(None, [*base, f"embed.model_path={tiny}"]), spark)
    ctx.store.write(_catalog(spark, ITEMS), CATALOG)
    run_recorded(ctx, run_embed)
    rows = DeltaTable(ctx.store.path(ITEM_EMBEDDINGS)).to_pandas()
    assert set(rows["model_name"]) == {loaded_model_name(tiny)}
    assert {len(e) for e in rows["embedding"]} == {32}  # the tiny model's width: its weights were used

    default = make_context("embed", load_config(None, base), spark)  # the default weights: every item again
    run_recorded(default, run_embed)
    assert default.counts["items_embedded"] == 4 and default.counts["items_unchanged"] == 0
    rows = DeltaTable(ctx.store.path(ITEM_EMBEDDINGS)).to_pandas()
    assert set(rows["model_name"]) == {DEFAULT_MODEL_NAME} and {len(e) for e in rows["embedding"]} == {384}

    again = make_context("embed", load_config(None, [*base, f"embed.model_name={DEFAULT_MODEL_NAME}"]), spark)
    run_recorded(again, run_embed)  # the default key is stable: nothing to re-embed
    assert again.counts["items_embedded"] == 0 and again.counts["items_unchanged"] == 4

    wrong = make_context("embed", load_config(None, [*base, f"embed.model_path={tiny}",
                                                     f"embed.model_name={DEFAULT_MODEL_NAME}"]), spark)
    with pytest.raises(ValueError, match="does not name the weights"):
        run_recorded(wrong, run_embed)
