"""fit_generator end to end on a planted pattern: free and content item tokens, the serving refit."""
import numpy as np
import pytest

from genrec_model.model.config import FitConfig, SeqDataConfig, SeqModelConfig, TrainConfig
from genrec_model.model.fit import fit_generator, rank_histories
from genrec_model.decode.trie import build_trie
from genrec_model.model.train_data import rec_sequences

N_ITEMS = 60  # R@10 must be able to tell a trained model from a random one


def _data(seed=0):
    """Users walk the items in a fixed cycle i -> i+1: the next item is always predictable."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(300):
        start, n = rng.integers(0, N_ITEMS), rng.integers(4, 8)
        seqs.append((start + np.arange(n)) % N_ITEMS)
    codes = np.stack([np.arange(N_ITEMS) % 3, np.arange(N_ITEMS)], 1)  # 3 prefixes of 20 items + item token
    content = np.eye(N_ITEMS, dtype=np.float32)[:, :N_ITEMS] + rng.normal(0, 0.01, (N_ITEMS, N_ITEMS)).astype(np.float32)
    return seqs, codes, content


def _cfg(rep, refit=False, epochs=12, codebooks=0, item_softmax="level", item_query="step"):
    return FitConfig(model=SeqModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, dropout=0.0,
                                          item_codebooks=codebooks, item_codebook_size=8, item_softmax=item_softmax,
                                          item_query=item_query),
                     data=SeqDataConfig(max_history=5), valid_users=100, valid_beam=10, item_representation=rep,
                     refit_for_serving=refit,
                     trainer=TrainConfig(lr=1e-2, warmup_steps=5, batch_size=32, epochs=epochs, patience=50,
                                         progress=False, weight_decay=0.0))


@pytest.mark.parametrize("rep,codebooks,item_softmax,item_query",
                         [("free", 0, "level", "step"), ("content", 0, "level", "step"), ("content", 12, "level", "step"),
                          ("content", 12, "prefix", "step"), ("content", 12, "prefix", "user"),
                          ("free", 0, "prefix", "user"), ("content", 12, "prefix", "attend")])
def test_fit_learns_the_cycle(rep, codebooks, item_softmax, item_query):
    seqs, codes, content = _data()
    fitted = fit_generator(seqs, codes, [3, N_ITEMS], [""] * N_ITEMS,
                           _cfg(rep, codebooks=codebooks, item_softmax=item_softmax, item_query=item_query),
                           item_content=content)
    assert fitted.result.best_metrics["recall@10"] > 0.75  # right prefix, random item: .5
    losses = [h["train_loss"] for h in fitted.result.history]
    assert losses[-1] < 0.5 * losses[0], losses  # it learned, whichever epoch validation picked
    if rep == "content":  # no per-item parameters: the table has no rows for the item level
        assert fitted.model.wte.weight.shape[0] == fitted.vocab.vocab_size - N_ITEMS


def test_serving_refit_learns_the_held_out_events():
    seqs, codes, content = _data()
    cfg = _cfg("free", refit=True)
    held_out = rec_sequences([np.array([0, 1, 2, 3, 4])], codes, cfg.data)
    full = rec_sequences([np.array([0, 1, 2, 3, 4])], codes, cfg.data, held_out=False)
    assert len(full.tokens[0]) == len(held_out.tokens[0]) + 2 * codes.shape[1]  # + the last two events
    fitted = fit_generator(seqs, codes, [3, N_ITEMS], [""] * N_ITEMS, cfg)
    assert fitted.serving_model is not None
    assert fitted.serving_result.best_epoch == fitted.result.best_epoch, (fitted.serving_result, fitted.result)
    diff = [(a - b).abs().max().item() for a, b in zip(fitted.model.parameters(), fitted.serving_model.parameters())]
    assert max(diff) > 0  # a separate fit, not a copy
    ranked, _ = rank_histories(fitted.serving_model, fitted.vocab, build_trie(codes, [3, N_ITEMS]),
                               fitted.vocab.codes_to_tokens(codes), [np.array([3, 4])], 10, 3)
    assert 5 in ranked[0]


def test_content_representation_needs_content():
    seqs, codes, _ = _data()
    with pytest.raises(ValueError, match="content vector"):
        fit_generator(seqs, codes, [3, N_ITEMS], [""] * N_ITEMS, _cfg("content"))
