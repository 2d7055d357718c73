import numpy as np
import pytest
import torch

from genrec_model.decode.beam_search import left_pad
from genrec_model.model.config import SeqDataConfig, SeqModelConfig, TrainConfig
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab
from genrec_model.model.train_data import (
    alignment_sequences,
    build_word_vocab,
    collate,
    eval_examples,
    item_word_ids,
    rec_sequences,
    rec_windows,
)
from genrec_model.model.sid_vocab import history_tokens
from genrec_model.model.trainer import lr_at, train


def test_rec_windows_cover_each_target_once():
    p = np.arange(10)
    wins = rec_windows(p, max_history=3)
    assert [w.tolist() for w in wins] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert [w.tolist() for w in rec_windows(np.arange(3), 5)] == [[0, 1, 2]]
    assert rec_windows(np.arange(1), 5) == []


def test_rec_sequences_layout_and_weights():
    vocab = SidVocab((3, 2))
    codes = np.array([[0, 0], [1, 1], [2, 0], [2, 1]])
    it = vocab.codes_to_tokens(codes)  # item i -> [6 + a, 9 + b]
    seqs = [np.array([0, 1, 2, 3, 1])]  # train prefix = [0, 1, 2]
    data = rec_sequences(seqs, it, SeqDataConfig(max_history=20, level_weights=(1.0, 2.0)))
    assert data.tokens[0].tolist() == [1, 6, 9, 7, 10, 8, 9]
    assert data.weights[0].tolist() == [0, 0, 0, 1, 2, 1, 2]
    x, y, w = collate(data.tokens, data.weights)
    assert x[0].tolist() == [1, 6, 9, 7, 10, 8] and y[0].tolist() == [6, 9, 7, 10, 8, 9]
    hist, targ, rows = eval_examples(seqs, 20, "test")
    assert hist[0].tolist() == [0, 1, 2, 3] and targ.tolist() == [1] and rows.tolist() == [0]


def test_alignment_sequences():
    vocab = SidVocab((3, 2), n_extra=4)
    it = vocab.codes_to_tokens(np.array([[0, 1], [2, 0]]))
    titles = ["Red Lipstick matte", "matte shampoo &amp; red"]
    words = build_word_vocab(titles, 3)
    assert words == ["matte", "red", "lipstick"]
    iw = item_word_ids(titles, words, max_words=2)
    assert [w.tolist() for w in iw] == [[1, 2], [0, 1]]
    t2s = alignment_sequences(np.array([1]), it, iw, vocab, "T2S")
    assert t2s.tokens[0].tolist() == [4, 11, 12, 3, 8, 9] and t2s.weights[0].tolist() == [0, 0, 0, 0, 1, 1]
    s2t = alignment_sequences(np.array([0]), it, iw, vocab, "S2T")
    assert s2t.tokens[0].tolist() == [5, 6, 10, 3, 12, 13] and s2t.weights[0].tolist() == [0, 0, 0, 0, 1, 1]


def test_left_pad():
    ids, mask, pos = left_pad([np.array([1, 5]), np.array([1, 6, 7])])
    assert ids.tolist() == [[0, 1, 5], [1, 6, 7]]
    assert mask.tolist() == [[0, 1, 1], [1, 1, 1]] and pos.tolist() == [[0, 0, 1], [0, 1, 2]]


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.0)
    assert lr_at(0, 110, cfg) == pytest.approx(0.1)
    assert lr_at(10, 110, cfg) == pytest.approx(1.0)
    assert lr_at(60, 110, cfg) == pytest.approx(0.5)
    assert lr_at(110, 110, cfg) == pytest.approx(0.0)
    lin = TrainConfig(lr=1.0, warmup_steps=0, decay="linear", min_lr_ratio=0.0)
    assert lr_at(25, 100, lin) == pytest.approx(0.75)


def test_tiny_model_overfits_planted_next_item(tmp_path):
    # 20 users walk the same chain 0 -> 1 -> 2 ...; 10 of them long enough (10 items) that their training
    # prefixes contain every transition the 10 short users (3..7 items) are tested on.
    vocab = SidVocab((5, 2))
    codes = np.array([[i // 2, i % 2] for i in range(10)])
    it = vocab.codes_to_tokens(codes)
    seqs = [np.arange(10) for _ in range(10)] + [np.arange(3 + u % 5) for u in range(10)]
    rec = rec_sequences(seqs, it, SeqDataConfig(max_history=12))
    hist, targ, _ = eval_examples(seqs[10:], 12, "test")
    assert targ.tolist() == [2, 3, 4, 5, 6] * 2
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=2, d_model=32, d_ff=64,
                                    dropout=0.0, max_positions=32))
    before = teacher_forced_metrics(model, hist, targ, it)
    cfg = TrainConfig(lr=1e-2, warmup_steps=5, batch_size=8, epochs=30, patience=30, monitor="val_nll",
                      monitor_mode="min", progress=False, weight_decay=0.0)
    res = train(model, lambda e: rec, lambda m: teacher_forced_metrics(m, hist, targ, it), cfg, out_dir=str(tmp_path))
    assert res.history[-1]["train_loss"] < 0.2 * res.history[0]["train_loss"]
    after = teacher_forced_metrics(model, hist, targ, it)
    assert after["val_nll"] < 0.1 * before["val_nll"]
    assert after["val_sid_acc"] == 1.0  # greedy SID is the planted next item for every user
    assert (tmp_path / "best.pt").exists() and (tmp_path / "curves.png").exists()


def test_group_softmax_loss_is_per_level_cross_entropy():
    vocab = SidVocab((3, 2), n_extra=2)
    assert vocab.softmax_groups() == (0, 6, 9, 11, 13)
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=1, d_model=8, d_ff=16,
                                    dropout=0.0, max_positions=8)).eval()
    x = torch.tensor([[1, 6, 9, 7]])
    y = torch.tensor([[6, 9, 7, 12]])  # level 0, level 1, level 0, extra token
    w = torch.tensor([[1.0, 2.0, 0.0, 1.0]])
    from genrec_model.model.trainer import sequence_loss

    got = sequence_loss(model, x, y, w, 0.0, torch.tensor(vocab.softmax_groups()))
    logits, _, _ = model(x)
    lp0 = torch.log_softmax(logits[0, 0, 6:9], -1)[0]
    lp1 = torch.log_softmax(logits[0, 1, 9:11], -1)[0]
    lp3 = torch.log_softmax(logits[0, 3, 11:13], -1)[1]
    torch.testing.assert_close(got, -(lp0 + 2 * lp1 + lp3) / 4)
    full = sequence_loss(model, x, y, w, 0.0, None)
    lpf = torch.log_softmax(logits[0], -1)
    torch.testing.assert_close(full, -(lpf[0, 6] + 2 * lpf[1, 9] + lpf[3, 12]) / 4)


def test_prefix_item_softmax_normalizes_over_the_items_sharing_the_prefix():
    """item_softmax="prefix": an item target's softmax runs over its prefix's items only; code levels keep
    their level softmax."""
    from genrec_model.model.trainer import item_siblings, sequence_loss

    vocab = SidVocab((2, 5))  # level 0 (prefix codes): tokens 6-7; level 1 (items): tokens 8-12
    codes = np.array([[0, 0], [0, 1], [1, 2], [1, 3], [0, 4]])  # prefix 0: items 0, 1, 4; prefix 1: items 2, 3
    sib = item_siblings(vocab.codes_to_tokens(codes), vocab.vocab_size)
    assert sib[:8].tolist() == [-1] * 8 and sib[8:].tolist() == [0, 0, 1, 1, 0]
    torch.manual_seed(0)
    model = SeqModel(SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=1, n_head=1, d_model=8, d_ff=16,
                                    dropout=0.0, max_positions=8)).eval()
    x = torch.tensor([[1, 6, 8, 7]])
    y = torch.tensor([[6, 8, 7, 11]])  # prefix 0, item 0, prefix 1, item 3
    w = torch.ones(1, 4)
    got = sequence_loss(model, x, y, w, 0.0, torch.tensor(vocab.softmax_groups()), torch.as_tensor(sib))
    logits, _, _ = model(x)
    lp0 = torch.log_softmax(logits[0, 0, 6:8], -1)[0]
    lp1 = torch.log_softmax(logits[0, 1, [8, 9, 12]], -1)[0]  # items of prefix 0
    lp2 = torch.log_softmax(logits[0, 2, 6:8], -1)[1]
    lp3 = torch.log_softmax(logits[0, 3, [10, 11]], -1)[1]  # items of prefix 1
    torch.testing.assert_close(got, -(lp0 + lp1 + lp2 + lp3) / 4)
    with pytest.raises(ValueError, match="item-specific"):  # TIGER's dedup digit names no item by itself
        item_siblings(vocab.codes_to_tokens(np.array([[0, 0], [1, 0]])), vocab.vocab_size)


@torch.no_grad()
def teacher_forced_metrics(
    model: SeqModel, histories: list[np.ndarray], targets: np.ndarray, item_tokens: np.ndarray, batch_size: int = 512
) -> dict:
    """Test helper: mean NLL of the target item's SID tokens given the history, and the exact-SID greedy accuracy."""
    model.eval()
    device = next(model.parameters()).device
    L = item_tokens.shape[1]
    nll, hit = 0.0, 0
    for s in range(0, len(histories), batch_size):
        seqs = [np.concatenate([history_tokens(h, item_tokens), item_tokens[t]]) for h, t in
                zip(histories[s:s + batch_size], targets[s:s + batch_size])]
        w = [np.r_[np.zeros(len(q) - L), np.ones(L)].astype(np.float32) for q in seqs]
        x, y, wt = (torch.as_tensor(a, device=device) for a in collate(seqs, w))
        logits, _, _ = model(x)
        sel = wt > 0
        lp = torch.log_softmax(logits[sel].float(), dim=-1)  # (B*L, V)
        tgt = y[sel]
        nll += float(-lp.gather(1, tgt[:, None]).sum())
        hit += int((lp.argmax(-1) == tgt).view(-1, L).all(1).sum())
    n = max(len(histories), 1)
    return {"val_nll": nll / n, "val_sid_acc": hit / n}



def test_bf16_only_where_native():
    import torch

    from genrec_model.model.hardware import native_bf16, use_bf16

    cpu = torch.device("cpu")
    assert not native_bf16(cpu, flags={"avx2", "fma"})
    assert native_bf16(cpu, flags={"avx2", "avx512_bf16"}) and native_bf16(cpu, flags={"amx_bf16"})
    assert use_bf16(False, cpu, "t") is False
    assert use_bf16(True, cpu, "t") == native_bf16(cpu)  # requested: bf16 exactly when the CPU has it


def test_cpu_description_names_the_kernels_torch_dispatches_to():
    import torch

    from genrec_model.model.hardware import describe_cpu

    cpu = describe_cpu()
    assert cpu["torch_cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert cpu["torch_cpu_capability"] and cpu["cpu_model"] and cpu["torch_version"] == torch.__version__
