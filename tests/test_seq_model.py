from dataclasses import replace

import numpy as np
import pytest
import torch

from genrec_model.model.config import SeqModelConfig
from genrec_model.model.seq_model import SeqModel

CFG = SeqModelConfig(vocab_size=37, n_layer=2, n_head=2, d_model=16, d_ff=32, dropout=0.0, max_positions=32)


def _model(seed=0):
    torch.manual_seed(seed)
    return SeqModel(CFG).eval()


def test_left_padding_matches_unpadded():
    m = _model()
    seq = torch.tensor([[1, 5, 9, 12, 7]])
    ref, _, _ = m(seq)
    padded = torch.tensor([[0, 0, 1, 5, 9, 12, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]])
    pos = torch.tensor([[0, 0, 0, 1, 2, 3, 4]])
    out, _, _ = m(padded, attention_mask=mask, position_ids=pos)
    torch.testing.assert_close(out[:, 2:], ref, atol=1e-5, rtol=0)


def test_kv_cache_matches_full_forward():
    m = _model(1)
    ids = torch.tensor([[0, 1, 4, 8, 20, 3], [1, 6, 6, 9, 11, 30]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    full, _, _ = m(ids, attention_mask=mask, position_ids=pos)
    logits, k, v = m(ids[:, :3], attention_mask=mask[:, :3], position_ids=pos[:, :3])
    assert k.shape == (2, 2, 2, 3, 8)
    for t in range(3, 6):
        step, k, v = m(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], position_ids=pos[:, t:t + 1], past_k=k, past_v=v)
        torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-5, rtol=0)
    assert k.shape == (2, 2, 2, 6, 8)


def test_causal_path_equals_masked_path():
    m = _model(2)
    ids = torch.randint(0, 37, (3, 9))
    a, _, _ = m(ids)
    b, _, _ = m(ids, attention_mask=torch.ones_like(ids))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_tied_head():
    m = _model()
    assert m.output_table().data_ptr() == m.wte.weight.data_ptr()


def test_hf_gpt2_same_logits():
    pytest.importorskip("transformers")
    from genrec_model.model.hf_compat import to_hf_gpt2

    m = _model(3)
    with torch.no_grad():  # non-trivial LayerNorm params so a wrong mapping shows
        for b in m.h:
            b.ln_1.weight.uniform_(0.5, 1.5)
            b.ln_2.bias.uniform_(-0.3, 0.3)
    hf = to_hf_gpt2(m)
    ids = torch.tensor([[0, 0, 1, 5, 9, 12], [1, 3, 4, 5, 6, 36]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    ours, _, _ = m(ids, attention_mask=mask, position_ids=pos)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)


def test_torch_step_model_matches_full_forward():
    from genrec_model.model.torch_step import TorchStepModel

    m = _model(4)
    step = TorchStepModel(m)
    hist = [np.array([1, 5, 9]), np.array([1, 6, 7, 8, 10])]
    ids = np.array([[0, 0, 1, 5, 9], [1, 6, 7, 8, 10]])
    mask = (ids > 0).astype(np.int64)
    pos = np.maximum(mask.cumsum(1) - 1, 0)
    logits, state = step.prefill(ids, mask, pos)
    state = step.reorder(state, np.array([1, 0, 0]))  # user 1 once, user 0 twice
    nxt = np.array([20, 21, 22])
    logits2, state = step.step(nxt, state)
    for row, (u, t) in enumerate(zip([1, 0, 0], nxt)):
        full, _, _ = m(torch.as_tensor(np.r_[hist[u], t][None]))
        np.testing.assert_allclose(logits2[row], full[0, -1].detach().numpy(), atol=1e-5)
        if row == 0:
            np.testing.assert_allclose(logits[1], full[0, -2].detach().numpy(), atol=1e-5)


@torch.no_grad()
def test_shared_prefix_step_matches_kv_cached_forward():
    """History KV once per user + per-beam suffix KV gives the logits of the plain cached forward."""
    torch.manual_seed(1)
    m = SeqModel(CFG).eval()
    B, W, T = 2, 3, 6
    hist = torch.randint(3, CFG.vocab_size, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :2] = 0  # left padding
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    _, pk, pv = m(hist, attention_mask=mask, position_ids=pos)
    rows = torch.arange(B).repeat_interleave(W)
    full_k, full_v, full_mask = pk[:, rows], pv[:, rows], mask[rows]
    sk = sv = torch.zeros(CFG.n_layer, B * W, CFG.n_head, 0, CFG.head_dim)
    next_pos = pos[rows, -1:] + 1
    w, b = m.head_weights()
    for _ in range(3):
        tok = torch.randint(3, CFG.vocab_size, (B * W, 1))
        full_mask = torch.cat([full_mask, torch.ones(B * W, 1, dtype=torch.long)], 1)
        want, full_k, full_v = m(tok, attention_mask=full_mask, position_ids=next_pos, past_k=full_k, past_v=full_v)
        hidden, sk, sv = m.shared_prefix_step(tok, next_pos, mask, pk, pv, sk, sv)
        assert torch.allclose(hidden @ w.T + b, want[:, -1], atol=1e-5)
        next_pos = next_pos + 1


@pytest.mark.parametrize("codebooks", [0, 3])
@torch.no_grad()
def test_content_model_scores_new_items_and_materializes_exactly(codebooks):
    from genrec_model.catalog.product_quantizer import fit_product_quantizer
    from genrec_model.model.item_content import item_level, materialize, set_catalog
    from genrec_model.model.sid_vocab import SidVocab

    vocab = SidVocab((4, 6))  # level 0: 4 codes, level 1: item tokens 0..5
    lo, hi = item_level(vocab)
    cfg = SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=2, d_model=16, d_ff=32, dropout=0.0,
                         item_content_dim=6, item_tokens=(lo, hi), item_codebooks=codebooks, item_codebook_size=2)
    torch.manual_seed(0)
    m = SeqModel(cfg).eval()
    assert m.wte.weight.shape[0] == vocab.vocab_size - (hi - lo)  # no per-item parameters
    rng = np.random.default_rng(0)
    codes = np.array([[0, 0], [1, 1], [1, 2], [3, 4]])  # item tokens 0, 1, 2, 4 (3 and 5 name no item)
    content = rng.normal(size=(4, 6)).astype(np.float32)
    centroids = torch.from_numpy(fit_product_quantizer(content, codebooks, 2)) if codebooks else None
    if codebooks:
        m.set_quantizer(centroids)
    set_catalog(m, vocab, codes, content)
    x = torch.tensor([[1, vocab.level_range(0)[0] + 1, lo + 1]])
    logits, _, _ = m(x)
    assert (logits[0, -1, lo + 3] < -1e8) and (logits[0, -1, lo + 5] < -1e8)  # no item, no probability
    # tonight's catalog has a new item (token 6): a bigger item level, scored from its content alone
    tonight = SidVocab((4, 7))
    codes2 = np.vstack([codes, [[2, 6]]])
    content2 = np.vstack([content, rng.normal(size=(1, 6)).astype(np.float32)])
    plain = materialize(m, tonight, codes2, content2)
    m2 = SeqModel(replace(cfg, vocab_size=tonight.vocab_size, item_tokens=item_level(tonight))).eval()
    m2.load_state_dict(m.state_dict())  # the quantizer travels with the weights
    set_catalog(m2, tonight, codes2, content2)
    want, _, _ = m2(x)
    got, _, _ = plain(x)
    assert torch.allclose(got, want, atol=1e-5)
    assert got[0, -1, item_level(tonight)[0] + 6] > -1e8  # the new item is a candidate
