"""item_query "user"/"attend": the item level is scored from the user state that predicted the prefix plus a
learned shift of the prefix token (+ for "attend" a read of the history's final states with a query from the
prefix); training, the candidate log-probs of alignment, the fused decoder (torch and onnxruntime) and the
benchmark's HF baseline must agree on that score."""
import numpy as np
import pytest
import torch

from genrec_model.decode.beam_search import beam_search_reference, decode, left_pad
from genrec_model.decode.config import BeamSearchConfig
from genrec_model.decode.constraints import TrieConstraint
from genrec_model.decode.trie import build_trie
from genrec_model.model.config import SeqModelConfig
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab, history_tokens
from genrec_model.model.torch_step import TorchStepModel
from genrec_model.model.trainer import item_siblings, sequence_loss, target_logprobs

VOCAB = SidVocab((4, 12))  # 4 prefixes, 12 item tokens
CODES = np.stack([np.arange(12) % 4, np.arange(12)], 1)  # prefix p holds items p, p+4, p+8


QUERIES = ["user", "attend", "attend+mlp", "attend+uq"]


def _model(seed=0, query="attend") -> SeqModel:
    torch.manual_seed(seed)
    lo, hi = VOCAB.level_range(1)
    query, _, mlp = query.partition("+")
    m = SeqModel(SeqModelConfig(vocab_size=VOCAB.vocab_size, n_layer=1, n_head=2, d_model=16, d_ff=32, dropout=0.0,
                                max_positions=32, item_softmax="prefix", item_query=query, item_tokens=(lo, hi),
                                item_query_mlp=24 if mlp == "mlp" else 0, item_read_user=mlp == "uq"))
    torch.nn.init.normal_(m.item_shift.weight, std=0.3)  # trained weights are not zero
    if query == "attend":
        torch.nn.init.normal_(m.item_attn_o.weight, std=0.3)
    if mlp == "mlp":
        torch.nn.init.normal_(m.item_mlp[2].weight, std=0.3)
    return m.eval()


@torch.no_grad()
def _exact_logprobs(model: SeqModel, history: np.ndarray) -> np.ndarray:
    """log P(item) for every item by enumeration: P(prefix | user) * softmax over the prefix's items of
    (user state + shift(prefix)) . w."""
    tokens = VOCAB.codes_to_tokens(CODES)
    h, _, _ = model.hidden(torch.as_tensor(history_tokens(history, tokens))[None])
    user = h[0, -1]
    w, b = (t.detach() for t in model.head_weights())
    p_lo, p_hi = VOCAB.level_range(0)
    lp_prefix = torch.log_softmax(user @ w[p_lo:p_hi].T + b[p_lo:p_hi], -1)
    out = np.zeros(len(CODES))
    for p in range(4):
        items = np.flatnonzero(CODES[:, 0] == p)
        e = model.token_table()[p_lo + p].reshape(1, 1, -1)
        keys = None
        if model.cfg.item_query == "attend":  # every history position
            keys = (*model.item_keys(h), torch.ones(1, 1, h.shape[1], dtype=torch.bool))
        q = model.item_query_state(user.reshape(1, 1, -1), e, keys)[0, 0]
        lp = torch.log_softmax(q @ w[tokens[items, 1]].T + b[tokens[items, 1]], -1)
        out[items] = (lp_prefix[p] + lp).numpy()
    return out


def test_config_needs_the_prefix_softmax():
    with pytest.raises(ValueError, match="item_softmax='prefix'"):
        SeqModelConfig(item_query="user")
    with pytest.raises(ValueError, match="item token range"):
        SeqModel(SeqModelConfig(vocab_size=20, item_softmax="prefix", item_query="user"))


@pytest.mark.parametrize("query", QUERIES)
def test_training_loss_and_decoder_score_the_same_distribution(query):
    model, tokens = _model(0, query), VOCAB.codes_to_tokens(CODES)
    history = np.array([3, 7, 2])
    exact = _exact_logprobs(model, history)
    assert abs(np.logaddexp.reduce(exact)) < 1e-5  # a distribution over the catalog
    # training: the loss on (history, item) is -log P(item), by the exact enumeration
    groups = torch.tensor(VOCAB.softmax_groups())
    sib = torch.as_tensor(item_siblings(tokens, VOCAB.vocab_size))
    for item in (0, 5, 11):
        seq = np.concatenate([history_tokens(history, tokens), tokens[item]])
        x, y = torch.as_tensor(seq[:-1])[None], torch.as_tensor(seq[1:])[None]
        w = torch.zeros_like(x, dtype=torch.float32)
        w[0, -2:] = 1.0
        loss = sequence_loss(model, x, y, w, 0.0, groups, sib)
        assert loss.item() * 2 == pytest.approx(-exact[item], abs=1e-5)
    # decoding: every prefix kept, so the beam's top-k is the exact top-k with the exact scores
    trie = build_trie(CODES, [4, 12])
    items, scores = decode(TorchStepModel(model), trie, VOCAB.level_starts, [history_tokens(history, tokens)],
                           BeamSearchConfig(beam_width=12, top_k=5, normalize="children"))
    np.testing.assert_array_equal(items[0], np.argsort(-exact, kind="stable")[:5])
    np.testing.assert_allclose(scores[0], np.sort(exact)[::-1][:5], atol=1e-5)


@pytest.mark.parametrize("query", QUERIES)
def test_alignment_candidate_logprobs_match(query):
    from genrec_model.align.a2po import candidate_logprobs

    model, tokens = _model(1, query), VOCAB.codes_to_tokens(CODES)
    history = np.array([1, 2, 9, 4])
    exact = _exact_logprobs(model, history)
    ids, mask, pos = (torch.as_tensor(a) for a in left_pad([history_tokens(history, tokens)]))
    cands = torch.as_tensor(tokens[[0, 6, 11]])[None]  # (1, 3, 2)
    sib = torch.as_tensor(item_siblings(tokens, VOCAB.vocab_size))
    with torch.no_grad():
        lp = candidate_logprobs(model, ids, mask, pos, cands, torch.tensor(VOCAB.softmax_groups()), sib)
    np.testing.assert_allclose(lp.sum(-1)[0].numpy(), exact[[0, 6, 11]], atol=1e-5)


def test_other_search_paths_refuse_a_user_state_model():
    model, tokens = _model(), VOCAB.codes_to_tokens(CODES)
    trie = build_trie(CODES, [4, 12])
    batch = left_pad([history_tokens(np.array([1, 2]), tokens)])
    with pytest.raises(ValueError, match="item_query='user'/'attend'"):
        beam_search_reference(TorchStepModel(model), TrieConstraint(trie), trie, VOCAB.level_starts, *batch,
                              BeamSearchConfig(beam_width=4, top_k=2, normalize="children"))
    with pytest.raises(ValueError, match="item_query='user'/'attend'"):
        decode(TorchStepModel(model), trie, VOCAB.level_starts, [batch[0][0]],
               BeamSearchConfig(beam_width=4, top_k=2, normalize="level"))


@pytest.mark.parametrize("query", QUERIES)
def test_onnx_export_decodes_like_torch(tmp_path, query):
    pytest.importorskip("onnxscript")
    from genrec_model.decode.ort_step import load_step_model
    from genrec_model.model.export import export_onnx, export_shared_step

    model, tokens = _model(2, query), VOCAB.codes_to_tokens(CODES)
    manifest = export_onnx(model, VOCAB, str(tmp_path), "m-test", "c-test")
    export_shared_step(model, tmp_path)
    trie = build_trie(CODES, [4, 12])
    hist = [history_tokens(np.array(h), tokens) for h in ([0, 1], [5, 6, 7, 8], [11])]
    cfg = BeamSearchConfig(beam_width=5, top_k=4, normalize="children")
    ref = decode(TorchStepModel(model), trie, VOCAB.level_starts, hist, cfg)
    got = decode(load_step_model(tmp_path, manifest=manifest), trie, VOCAB.level_starts, hist, cfg)
    np.testing.assert_array_equal(ref[0], got[0])
    np.testing.assert_allclose(ref[1], got[1], atol=1e-4)


@pytest.mark.parametrize("query", QUERIES)
def test_hf_generate_baseline_scores_like_the_decoder(query):
    """benchmarks/decode_bench.py's HF baseline for a user-state model (its LogitsProcessor) must give the
    decoder's lists, or its speedup would compare different searches."""
    pytest.importorskip("transformers")
    from benchmarks.decode_bench import BenchConfig, hf_decode, token_dict_trie
    from genrec_model.model.hf_compat import to_hf_gpt2

    model, tokens = _model(3, query), VOCAB.codes_to_tokens(CODES)
    step = TorchStepModel(model)
    trie = build_trie(CODES, [4, 12])
    hist = [history_tokens(np.array(h), tokens) for h in ([0, 1], [5, 6, 7, 8], [11], [2, 2, 9])]
    ours, ours_s = decode(step, trie, VOCAB.level_starts, hist, BeamSearchConfig(beam_width=3, top_k=3,
                                                                                 normalize="children"))
    cfg = BenchConfig(beam=3, top_k=3)
    token_to_item = {tuple(t): i for i, t in enumerate(tokens.tolist())}
    hf_items, hf_s = hf_decode(to_hf_gpt2(model), hist, token_dict_trie(CODES, VOCAB), token_to_item, VOCAB, cfg,
                               "children", model)
    np.testing.assert_array_equal(ours, hf_items)
    np.testing.assert_allclose(ours_s, hf_s, atol=1e-4)


@pytest.mark.parametrize("query", QUERIES)
def test_the_exported_plain_model_keeps_the_item_query(query):
    """export materializes a content model as a plain one (item_content.plain_model): the step-free item level
    must survive it."""
    from genrec_model.model.item_content import plain_model

    model = _model(4, query)
    w, b = model.head_weights()
    plain = plain_model(model.cfg, model.state_dict(), w.detach().clone(), b.detach().clone())
    with torch.no_grad():
        want, got = model.item_query_tables(), plain.item_query_tables()
        assert sorted(want) == sorted(got)
        for k in want:
            torch.testing.assert_close(got[k], want[k])
