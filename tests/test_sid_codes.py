import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_model.catalog.codebook_store import CodebookError, CodebookMeta, load_codebook, read_manifest, save_codebook
from genrec_model.catalog.frozen_rqvae import FrozenRQVAE
from genrec_model.catalog.sid_codes import assign_sids, parse_sid, sid_stats, sid_string

# 6 items; "d", "b", "f" share (1, 2); "a", "c" share (0, 5); "e" alone
KEYS = ["d", "a", "b", "e", "c", "f"]
SEM = np.array([[1, 2], [0, 5], [1, 2], [3, 3], [0, 5], [1, 2]])


def test_dedup_exact_digits_by_item_key():
    out = assign_sids(SEM, KEYS, codebook_size=8, scheme="dedup")
    assert out.as_dict(KEYS) == {
        "a": (0, 5, 0), "b": (1, 2, 0), "c": (0, 5, 1), "d": (1, 2, 1), "e": (3, 3, 0), "f": (1, 2, 2),
    }
    assert out.level_sizes == [8, 8, 3] and out.n_new == 6 and out.codes.dtype == np.int32


def test_hybrid_exact_tokens_and_prefix():
    out = assign_sids(SEM, KEYS, codebook_size=8, scheme="hybrid", prefix_levels=1)
    assert out.as_dict(KEYS) == {
        "a": (0, 0), "b": (1, 1), "c": (0, 2), "d": (1, 3), "e": (3, 4), "f": (1, 5),
    }
    assert out.level_sizes == [8, 6]


@pytest.mark.parametrize("scheme", ["dedup", "hybrid"])
def test_unique_and_stable(scheme):
    rng = np.random.default_rng(0)
    sem = rng.integers(0, 3, size=(300, 3))  # 27 tuples for 300 items: many collisions
    keys = [f"item{i:04d}" for i in range(300)]
    first = assign_sids(sem, keys, 3, scheme)
    assert len({tuple(r) for r in first.codes}) == 300
    # re-run with nothing changed -> identical; with existing -> identical, nothing new
    np.testing.assert_array_equal(first.codes, assign_sids(sem, keys, 3, scheme).codes)
    again = assign_sids(sem, keys, 3, scheme, existing=first.as_dict(keys))
    np.testing.assert_array_equal(first.codes, again.codes)
    assert again.n_new == 0
    # input order does not matter
    perm = rng.permutation(300)
    shuffled = assign_sids(sem[perm], [keys[i] for i in perm], 3, scheme)
    np.testing.assert_array_equal(shuffled.codes, first.codes[perm])
    # new items (including keys sorting before old ones) -> old codes unchanged, all unique
    new_sem = rng.integers(0, 3, size=(50, 3))
    all_keys = keys + [f"a_new{i}" for i in range(50)]
    grown = assign_sids(np.vstack([sem, new_sem]), all_keys, 3, scheme, existing=first.as_dict(keys))
    np.testing.assert_array_equal(grown.codes[:300], first.codes)
    assert len({tuple(r) for r in grown.codes}) == 350 and grown.n_new == 50


def test_incremental_digits_exact_and_retired_items_keep_reserving():
    existing = {"a": (0, 5, 0), "c": (0, 5, 1), "x": (1, 2, 0)}  # "x" retired from the catalog
    out = assign_sids(np.array([[0, 5], [1, 2], [0, 5], [1, 2]]), ["a", "b", "c", "z"], 8, "dedup",
                      existing=existing)
    assert out.as_dict(["a", "b", "c", "z"]) == {"a": (0, 5, 0), "b": (1, 2, 1), "c": (0, 5, 1), "z": (1, 2, 2)}
    hyb = assign_sids(np.array([[0, 5], [1, 2]]), ["a", "b"], 8, "hybrid", existing={"a": (0, 5, 7)})
    assert hyb.as_dict(["a", "b"]) == {"a": (0, 5, 7), "b": (1, 2, 8)} and hyb.level_sizes == [8, 8, 9]


def test_existing_item_keeps_code_even_if_semantics_moved():
    out = assign_sids(np.array([[4, 4]]), ["a"], 8, "dedup", existing={"a": (0, 5, 0)})
    assert out.codes.tolist() == [[0, 5, 0]] and out.n_stale == 1


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        assign_sids(SEM, KEYS, 8, "nope")
    with pytest.raises(ValueError):
        assign_sids(SEM, KEYS[:-1] + ["d"], 8)  # duplicate key
    with pytest.raises(ValueError):
        assign_sids(SEM, KEYS, 4)  # code 5 >= codebook_size
    with pytest.raises(ValueError):
        assign_sids(SEM, KEYS, 8, existing={"a": (0, 5)})  # wrong length for dedup
    with pytest.raises(ValueError):
        assign_sids(SEM, KEYS, 8, existing={"a": (0, 5, 0), "c": (0, 5, 0)})  # not unique


def test_sid_string_round_trip():
    assert sid_string([99, 225, 67, 0]) == "<a_99><b_225><c_67><d_0>"
    assert parse_sid("<a_99><b_225><c_67><d_0>") == (99, 225, 67, 0)
    for bad in ["<b_1>", "<a_1><a_2>", "a_1", "<a_x>", "<a_1><b_-2>"]:
        with pytest.raises(ValueError):
            parse_sid(bad)


def test_sid_stats_exact():
    st = sid_stats(SEM, codebook_size=8)
    assert st.n_items == 6 and st.n_unique_tuples == 3
    assert st.collision_rate == pytest.approx(5 / 6)  # only "e" is alone
    assert st.utilization == [3 / 8, 3 / 8]
    assert st.max_items_per_prefix == [3, 3] and st.n_dedup_digits == 3


def _frozen(input_dim=4, latent=2, levels=3, k=5, seed=0) -> FrozenRQVAE:
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return FrozenRQVAE(mean=f(input_dim), std=np.abs(f(input_dim)) + 1, weights=(f(3, input_dim), f(latent, 3)),
                       biases=(f(3), f(latent)), codebooks=f(levels, k, latent))


def _meta(**kw) -> CodebookMeta:
    base = dict(embedding_model="minilm", embedding_dim=4, dedup_scheme="dedup", train_sample_size=100,
                metrics={"collision_rate": 0.01})
    return CodebookMeta(**{**base, **kw})


def test_codebook_store_round_trip(tmp_path):
    frozen = _frozen()
    path = save_codebook(tmp_path, frozen, _meta())
    loaded, manifest = load_codebook(path, expect={"embedding_model": "minilm", "embedding_dim": 4})
    assert manifest["version"] == path.name and path.name.startswith("cb-")
    assert (manifest["n_levels"], manifest["codebook_size"], manifest["latent_dim"]) == (3, 5, 2)
    assert manifest["metrics"] == {"collision_rate": 0.01} and manifest["dedup_scheme"] == "dedup"
    x = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.assign(x), frozen.assign(x))
    # same content + same time -> same version (content hash); different content -> different
    other = save_codebook(tmp_path / "b", _frozen(seed=1), _meta())
    assert other.name != path.name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_codebook_store_errors(tmp_path):
    path = save_codebook(tmp_path, _frozen(), _meta())
    with pytest.raises(CodebookError, match="embedding_dim"):
        load_codebook(path, expect={"embedding_dim": 384})
    with pytest.raises(CodebookError, match="embedding_dim"):
        save_codebook(tmp_path, _frozen(), _meta(embedding_dim=8))
    data = bytearray((path / "codebook.npz").read_bytes())
    data[-10] ^= 0xFF
    (path / "codebook.npz").write_bytes(bytes(data))
    with pytest.raises(CodebookError, match="sha256"):
        load_codebook(path)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["n_levels"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CodebookError, match="n_levels"):
        read_manifest(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(CodebookError, match="corrupt"):
        read_manifest(path)
    with pytest.raises(CodebookError, match="no manifest"):
        load_codebook(tmp_path / "missing")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 3), n_old=st.integers(0, 40), seed=st.integers(0, 10_000),
       scheme=st.sampled_from(["dedup", "hybrid"]))
def test_property_unique_and_old_codes_kept(n, k, n_old, seed, scheme):
    rng = np.random.default_rng(seed)
    sem = rng.integers(0, k, size=(n, 2))
    keys = [f"k{v}" for v in rng.permutation(1000)[:n]]
    n_old = min(n_old, n)
    old = assign_sids(sem[:n_old], keys[:n_old], k, scheme)
    out = assign_sids(sem, keys, k, scheme, existing=old.as_dict(keys[:n_old]))
    assert len({tuple(r) for r in out.codes}) == n
    np.testing.assert_array_equal(out.codes[:n_old], old.codes)
    assert out.n_new == n - n_old
    assert all(int(out.codes[:, lv].max()) < size for lv, size in enumerate(out.level_sizes))
    if scheme == "dedup":  # semantic prefix preserved, digits contiguous from 0 in each group
        np.testing.assert_array_equal(out.codes[:, :2], sem)
        for t in {tuple(r) for r in sem}:
            digits = sorted(out.codes[(sem == t).all(1), 2].tolist())
            assert digits == list(range(len(digits)))
