import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrec_model.decode.beam_search import decode, left_pad
from genrec_model.decode.config import BeamSearchConfig
from genrec_model.decode.trie import build_trie
from genrec_model.model.encdec_model import EncDecConfig, EncDecModel, EncDecStepModel
from genrec_model.model.sid_vocab import BOS, SidVocab, history_tokens


@pytest.fixture(autouse=True)
def one_thread():  # small matrices: extra threads only contend on a shared CPU
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


TINY = dict(n_enc_layer=2, n_dec_layer=2, n_head=2, d_kv=8, d_model=16, d_ff=32, dropout=0.0)


def _model(vocab: SidVocab, seed: int = 0, **kw) -> EncDecModel:
    torch.manual_seed(seed)
    return EncDecModel(EncDecConfig(vocab_size=vocab.vocab_size, **{**TINY, **kw})).eval()


def _ranges(vocab: SidVocab) -> list[tuple[int, int]]:
    return [vocab.level_range(lv) for lv in range(vocab.n_levels)]


def test_step_adapter_matches_full_forward():
    vocab = SidVocab((3, 4, 5))
    m = _model(vocab, seed=1)
    (a0, a1), (b0, b1), (c0, c1) = _ranges(vocab)
    rng = np.random.default_rng(0)
    histories = [np.r_[BOS, rng.integers(a0, c1, size=n)] for n in (6, 2, 9)]  # different lengths: left padding
    step = EncDecStepModel(m)
    logits0, state = step.prefill(*left_pad(histories))
    rows1 = np.array([2, 0, 0, 1, 2, 1])  # expand 3 users to 6 rows, out of order
    tok1 = rng.integers(a0, a1, size=6)
    state = step.reorder(state, rows1)
    logits1, state = step.step(tok1, state)
    rows2 = np.array([5, 3, 1, 0, 4, 2])  # reorder again before the last level
    tok2 = rng.integers(b0, b1, size=6)
    state = step.reorder(state, rows2)
    logits2, _ = step.step(tok2, state)
    assert logits0.shape == (3, vocab.vocab_size) and logits2.shape == (6, vocab.vocab_size)

    with torch.no_grad():
        for r in range(6):
            r1 = rows2[r]  # row r of level 2 continues row r1 of level 1, whose user is rows1[r1]
            user = rows1[r1]
            ids = torch.as_tensor(histories[user])[None]
            dec = torch.as_tensor([[BOS, tok1[r1], tok2[r]]])
            full = m(ids, torch.ones_like(ids), dec)[0].numpy()  # (3, V), unpadded history
            assert np.abs(full[0] - logits0[user]).max() < 1e-4
            assert np.abs(full[1] - logits1[r1]).max() < 1e-4
            assert np.abs(full[2] - logits2[r]).max() < 1e-4


def test_level_loss_is_per_level_softmax():
    vocab = SidVocab((3, 4, 5))
    m = _model(vocab, seed=2)
    ids, mask, _ = left_pad([np.array([BOS, 9, 12, 15]), np.array([BOS, 10])])
    ids, mask = torch.as_tensor(ids), torch.as_tensor(mask)
    targets = torch.tensor([[6, 10, 15], [8, 9, 17]])
    with torch.no_grad():
        loss = m.level_loss(ids, mask, targets, _ranges(vocab))
        logits = m(ids, mask, m.decoder_inputs(targets))  # (B, L, V)
    nll = [F.cross_entropy(logits[:, lv, lo:hi], targets[:, lv] - lo, reduction="none")
           for lv, (lo, hi) in enumerate(_ranges(vocab))]
    torch.testing.assert_close(loss, torch.stack(nll).mean(), atol=1e-5, rtol=0)


def test_overfits_toy_set_and_beam_search_finds_planted_item():
    # 8 items, hybrid-like codes (item % 4, item); every user follows the rule next = (last + 3) % 8
    n_items = 8
    codes = np.stack([np.arange(n_items) % 4, np.arange(n_items)], axis=1)
    vocab = SidVocab((4, n_items))
    item_tokens = vocab.codes_to_tokens(codes)
    seqs = [np.array([(s + 3 * k) % n_items for k in range(6)]) for s in range(n_items)]
    hist = [history_tokens(q[:j], item_tokens) for q in seqs for j in range(1, len(q))]
    targets = torch.as_tensor(np.stack([item_tokens[q[j]] for q in seqs for j in range(1, len(q))]))
    ids, mask, _ = left_pad(hist)
    ids, mask = torch.as_tensor(ids), torch.as_tensor(mask)

    m = _model(vocab, seed=3, d_model=32, d_ff=64)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = m.level_loss(ids, mask, targets, _ranges(vocab))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    m.eval()
    assert losses[0] > 1.0 and losses[-1] < 0.05, (losses[0], losses[-1])

    starts = [lo for lo, _ in _ranges(vocab)]
    queries = [q[:4] for q in seqs]
    items, scores = decode(EncDecStepModel(m), build_trie(codes, [4, n_items]), starts,
                           [history_tokens(h, item_tokens) for h in queries], BeamSearchConfig(beam_width=4, top_k=2))
    np.testing.assert_array_equal(items[:, 0], [(h[-1] + 3) % n_items for h in queries])
    assert (scores[:, 0] > np.log(0.5)).all()
