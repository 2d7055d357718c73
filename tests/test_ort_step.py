import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
export = pytest.importorskip("genrec_model.model.export")

from genrec_model.decode.beam_search import decode, left_pad  # noqa: E402
from genrec_model.decode.config import BeamSearchConfig, OrtConfig  # noqa: E402
from genrec_model.decode.ort_step import (  # noqa: E402
    OrtSharedPrefixStepModel, OrtStepModel, choose_providers, cuda_device_visible, load_step_model)
from genrec_model.decode.trie import build_trie  # noqa: E402
from genrec_model.model.artifacts import write_export_manifest  # noqa: E402
from genrec_model.model.config import SeqModelConfig  # noqa: E402
from genrec_model.model.seq_model import SeqModel  # noqa: E402
from genrec_model.model.sid_vocab import SidVocab  # noqa: E402
from genrec_model.model.torch_step import TorchStepModel  # noqa: E402

VOCAB = SidVocab((4, 4, 3))  # tokens: specials 0-5, level 0: 6-9, level 1: 10-13, level 2: 14-16


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    m = SeqModel(SeqModelConfig(vocab_size=VOCAB.vocab_size, n_layer=2, n_head=2, d_model=16, d_ff=32, dropout=0.0))
    with torch.no_grad():  # sharper logits than the 0.02-std init so beams differ clearly
        m.wte.weight.mul_(50.0)
    out = tmp_path_factory.mktemp("onnx")
    write_export_manifest(str(out), export.export_onnx(m, VOCAB, str(out), model_version="t", codebook_version="c"))
    plain = OrtStepModel(out, OrtConfig(intra_op_threads=1))  # loaded before step_shared.onnx exists
    export.export_shared_step(m, out)
    return TorchStepModel(m), plain, load_step_model(out)


def test_cpu_provider_without_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not cuda_device_visible()
    assert choose_providers(OrtConfig()) == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError):
        choose_providers(OrtConfig(use_gpu=True))


def test_prefill_step_reorder_parity(models):
    tm, om, _ = models
    batch = left_pad([np.array([1, 7, 11, 15]), np.array([1, 8]), np.array([1, 9, 12, 16, 7, 13])])
    lt, st = tm.prefill(*batch)
    lo, so = om.prefill(*batch)
    np.testing.assert_allclose(lo, lt, atol=1e-4)
    rows = np.array([2, 0, 0, 1, 2])
    st, so = tm.reorder(st, rows), om.reorder(so, rows)
    for tokens in (np.array([6, 7, 8, 9, 6]), np.array([10, 13, 12, 11, 10])):
        lt, st = tm.step(tokens, st)
        lo, so = om.step(tokens, so)
        np.testing.assert_allclose(lo, lt, atol=1e-4)
    assert so.past_k.shape == (2, 5, 2, 8, 8)


def test_decode_same_items(models):
    tm, om, sm = models
    rng = np.random.default_rng(0)
    codes = np.stack(np.unravel_index(rng.choice(48, 30, replace=False), (4, 4, 3)), axis=1)
    trie = build_trie(codes, VOCAB.level_sizes)
    starts = tuple(VOCAB.level_range(d)[0] for d in range(3))
    hist = [np.concatenate([[1], VOCAB.codes_to_tokens(codes[rng.integers(0, 30, 3)]).ravel()]) for _ in range(6)]
    cfg = BeamSearchConfig(beam_width=8, top_k=5)
    it, st = decode(tm, trie, starts, hist, cfg)
    for m in (om, sm):
        io, so = decode(m, trie, starts, hist, cfg)
        assert (io == it).mean() == 1.0
        np.testing.assert_allclose(so, st, atol=1e-4)


@pytest.mark.parametrize("users_per_call", [1, 4])
def test_fused_children_head_matches_reference_search(models, users_per_call):
    """normalize="children": the fused head (hidden states + children-only logits) returns the items and
    scores of the numpy reference search (full logits, trie mask, log-softmax over what it allows)."""
    from genrec_model.decode.beam_search import beam_search_reference
    from genrec_model.decode.constraints import TrieConstraint

    tm, _, sm = models
    rng = np.random.default_rng(3)
    codes = np.stack(np.unravel_index(rng.choice(48, 20, replace=False), (4, 4, 3)), axis=1)
    trie = build_trie(codes, VOCAB.level_sizes)
    starts = tuple(VOCAB.level_range(d)[0] for d in range(3))
    hist = [np.concatenate([[1], VOCAB.codes_to_tokens(codes[rng.integers(0, 20, 2)]).ravel()]) for _ in range(5)]
    cfg = BeamSearchConfig(beam_width=6, top_k=4, normalize="children", users_per_call=users_per_call)
    fused_items, fused_scores = decode(sm, trie, starts, hist, cfg)
    for model in (tm, sm):
        ref_items, ref_scores = decode(model, trie, starts, hist, cfg, constraint=TrieConstraint(trie))
        assert (fused_items == ref_items).all()
        np.testing.assert_allclose(fused_scores, ref_scores, atol=1e-4)
    # each user's scores are log-probabilities of a distribution over the catalog's items
    batch = left_pad(hist[:1])
    every, every_scores = beam_search_reference(tm, TrieConstraint(trie), trie, starts, *batch,
                                                BeamSearchConfig(beam_width=20, top_k=20, normalize="children"))
    assert (every[0] >= 0).all()
    assert np.exp(every_scores[0]).sum() == pytest.approx(1.0, abs=1e-6)


def test_shared_prefix_step_parity(models):
    tm, _, sm = models
    assert isinstance(sm, OrtSharedPrefixStepModel)
    batch = left_pad([np.array([1, 7, 11, 15, 6, 10]), np.array([1, 8])])
    lt, st = tm.prefill(*batch)
    ls, ss = sm.prefill(*batch)
    np.testing.assert_allclose(ls, lt, atol=1e-4)
    rows = np.array([0, 0, 0, 1, 1, 1])  # expand 2 users to 3 beams each
    st, ss = tm.reorder(st, rows), sm.reorder(ss, rows)
    for tokens, parents in ((np.array([6, 7, 8, 9, 6, 7]), np.array([2, 0, 1, 5, 5, 3])),
                            (np.array([10, 11, 12, 13, 10, 11]), np.array([1, 1, 0, 3, 4, 5])),
                            (np.array([14, 15, 16, 14, 15, 16]), None)):
        lt, st = tm.step(tokens, st)
        ls, _ = sm.step(tokens, ss, head_ids=np.array([16, 6, 7]))  # subset of the LM head
        np.testing.assert_allclose(ls, lt[:, [16, 6, 7]], atol=1e-4)
        ls, ss = sm.step(tokens, ss)
        np.testing.assert_allclose(ls, lt, atol=1e-4)
        if parents is not None:
            st, ss = tm.reorder(st, parents), sm.reorder(ss, parents)
    assert ss.prefix_k.shape == (2, 2, 2, 6, 8) and ss.suffix_k.shape == (2, 6, 2, 3, 8)
    with pytest.raises(ValueError, match="user"):
        sm.reorder(ss, np.array([0, 1, 3, 3, 4, 5]))  # row 3 belongs to user 1


def test_int8_graphs_decode_close_to_fp32(models, tmp_path):
    """export.int8: the quantized graphs load through the same StepModel and stay near the fp32 logits."""
    import shutil

    from genrec_model.model.parity import parity_max_abs_diff

    tm, _, sm = models
    shutil.copytree(sm.model_dir, tmp_path / "q", dirs_exist_ok=True)
    done = export.quantize_int8(tmp_path / "q")
    assert set(done) == {"prefill.onnx", "step.onnx", "step_shared.onnx"}
    q = load_step_model(tmp_path / "q")
    diff = parity_max_abs_diff(tm, q, VOCAB)
    assert 0 < diff < 0.5 * np.abs(tm.prefill(*left_pad([np.array([1, 7, 11])]))[0]).max()


@pytest.mark.parametrize("normalize", ["children", "level"])
def test_first_level_log_probs_are_the_searchs_level_zero(models, normalize):
    """decode(first_level=True): the log-probs of every first-level code, normalized as level 0 of the search
    (the fused children-only path and the full-logits path agree); each item scores at most its prefix."""
    tm, _, sm = models
    rng = np.random.default_rng(5)
    codes = np.stack(np.unravel_index(rng.choice(48, 20, replace=False), (4, 4, 3)), axis=1)
    codes = codes[codes[:, 0] != 2]  # a first-level code no item starts with
    trie = build_trie(codes, VOCAB.level_sizes)
    starts = tuple(VOCAB.level_range(d)[0] for d in range(3))
    hist = [np.concatenate([[1], VOCAB.codes_to_tokens(codes[rng.integers(0, len(codes), 2)]).ravel()])
            for _ in range(5)]
    cfg = BeamSearchConfig(beam_width=6, top_k=4, normalize=normalize, users_per_call=2)
    items, scores, level0 = decode(tm, trie, starts, hist, cfg, first_level=True)
    logits, _ = tm.prefill(*left_pad(hist))
    x = logits[:, starts[0]:starts[0] + 4].astype(np.float64)
    present = np.isin(np.arange(4), codes[:, 0])
    x = np.where(present, x, -np.inf) if normalize == "children" else x
    want = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(level0[:, present], want[:, present], atol=1e-5)
    assert np.isneginf(level0[:, ~present]).all()
    assert (scores <= level0[np.arange(5)[:, None], codes[np.maximum(items, 0), 0]] + 1e-6).all()
    if normalize == "children":
        fused = decode(sm, trie, starts, hist, cfg, first_level=True)
        assert (fused[0] == items).all()
        np.testing.assert_allclose(fused[2], level0, atol=1e-4)
