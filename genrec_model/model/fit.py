"""Fit the generative recommender from plain arrays: the one entry point the `train` job and the
benchmarks share (vocabulary, training windows, alignment tasks, validation by constrained beam search).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from genrec_model.catalog.product_quantizer import fit_product_quantizer
from genrec_model.decode.beam_search import decode
from genrec_model.decode.config import BeamSearchConfig, trained_normalization
from genrec_model.decode.trie import SidTrie, build_trie
from genrec_model.evaluation.metrics import per_user_gains
from genrec_model.model.config import FitConfig, SeqDataConfig
from genrec_model.model.distributed import SINGLE, Ranks
from genrec_model.model.item_content import item_level, set_catalog
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab, history_tokens
from genrec_model.model.torch_step import TorchStepModel
from genrec_model.model.train_data import build_word_vocab, epoch_sequences, eval_examples, item_word_ids, rec_sequences
from genrec_model.model.trainer import TrainResult, item_siblings, train


@dataclass
class Fitted:
    model: SeqModel
    vocab: SidVocab
    words: list[str]
    result: TrainResult
    serving_model: SeqModel | None = None  # refit on every event (cfg.refit_for_serving)
    serving_result: TrainResult | None = None


def make_vocab(level_sizes: list[int], titles: list[str], cfg: SeqDataConfig) -> tuple[SidVocab, list[str]]:
    uses_words = cfg.t2s_ratio > 0 or cfg.s2t_ratio > 0
    words = build_word_vocab(titles, cfg.n_words) if uses_words else []
    return SidVocab(tuple(level_sizes), n_extra=len(words)), words


def rank_histories(model, vocab: SidVocab, trie: SidTrie, item_tokens: np.ndarray, histories: list[np.ndarray],
                   beam: int, top_k: int, users_per_call: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices (U, top_k) and log-probs for item-index histories, with a torch model."""
    step = TorchStepModel(model, next(model.parameters()).device)
    toks = [history_tokens(h, item_tokens) for h in histories]
    return decode(step, trie, vocab.level_starts, toks,
                  BeamSearchConfig(beam_width=beam, top_k=top_k, users_per_call=users_per_call,
                                   normalize=trained_normalization(model.cfg.item_softmax)))


def validator(sequences: list[np.ndarray], vocab: SidVocab, trie: SidTrie, item_tokens: np.ndarray, cfg: FitConfig,
              ranks: Ranks = SINGLE):
    """Model selection's metric: Recall/NDCG@10 of constrained beam search (cfg.valid_beam) on the validation
    items of cfg.valid_users sampled users (cfg.valid_seed); used by training and by alignment.
    Distributed, each rank samples its share of the users from its own `sequences` and the means are
    taken over every rank's users."""
    vh, vt, _ = eval_examples(sequences, cfg.data.max_history, "valid")
    pick = np.random.default_rng(cfg.valid_seed + ranks.rank).permutation(len(vh))[:math.ceil(cfg.valid_users / ranks.world)]
    vh, vt = [vh[i] for i in pick], vt[pick]
    n_users = ranks.sum([len(vt)])[0]
    if not n_users:  # model selection needs validation users; never silently keep the first epoch
        raise ValueError(f"no validation users (valid_users={cfg.valid_users}, {len(sequences)} users, "
                         "a validation user needs >= 3 events)")

    def validate(model: SeqModel) -> dict:
        sums = [0.0, 0.0]
        if len(vt):
            ranked, _ = rank_histories(model, vocab, trie, item_tokens, vh, cfg.valid_beam, min(10, cfg.valid_beam))
            recall, ndcg = per_user_gains(ranked, vt, 10)
            sums = [recall.sum(), ndcg.sum()]
        recall_sum, ndcg_sum = ranks.sum(sums)
        return {"recall@10": recall_sum / n_users, "ndcg@10": ndcg_sum / n_users}

    return validate


def fit_generator(sequences: list[np.ndarray], codes: np.ndarray, level_sizes: list[int], titles: list[str],
                  cfg: FitConfig, out_dir: str | None = None, item_content: np.ndarray | None = None,
                  ranks: Ranks = SINGLE) -> Fitted:
    """Train on leave-one-out training prefixes of `sequences` (item indices, oldest first).
    item_content (N, D): each item's content vector (text embedding), needed when
    cfg.item_representation is "content". ranks: data-parallel training (model/distributed.py), each rank
    passing its own share of the users as `sequences`."""
    if cfg.model.vocab_size or cfg.model.item_content_dim:
        raise ValueError("train.model.vocab_size / item_content_dim are derived from the data; leave them unset")
    content = cfg.item_representation == "content"
    if content and (item_content is None or len(item_content) != len(codes)):
        raise ValueError("item_representation=content needs one content vector per item")
    vocab, words = make_vocab(level_sizes, titles, cfg.data)
    item_tokens = vocab.codes_to_tokens(codes)  # (N, L)
    trie = build_trie(codes, level_sizes)
    rec = rec_sequences(sequences, item_tokens, cfg.data)
    if ranks.min_int(len(rec)) == 0:
        raise ValueError("no training windows: every user history is shorter than 3 items"
                         + (f" in some process's share (rank {ranks.rank} has {len(rec)})" if ranks.distributed else ""))
    item_words = item_word_ids(titles, words, cfg.data.max_words) if words else None
    rng = np.random.default_rng(cfg.trainer.seed + ranks.rank)

    def epoch_data(epoch: int):
        return epoch_sequences(rec, item_tokens, item_words, vocab, cfg.data, rng)

    validate = validator(sequences, vocab, trie, item_tokens, cfg, ranks)

    max_positions = 1 + (cfg.data.max_history + 1) * vocab.n_levels + cfg.data.max_words + 2
    torch.manual_seed(cfg.trainer.seed)
    model_cfg = replace(cfg.model, vocab_size=vocab.vocab_size, max_positions=max_positions)
    if content:
        model_cfg = replace(model_cfg, item_content_dim=int(item_content.shape[1]), item_tokens=item_level(vocab))
    elif cfg.model.item_query == "user":
        model_cfg = replace(model_cfg, item_tokens=item_level(vocab))
    centroids = None
    if content and cfg.model.item_codebooks:  # the content codes: fit on the training catalog only
        centroids = torch.from_numpy(fit_product_quantizer(item_content, cfg.model.item_codebooks,
                                                           cfg.model.item_codebook_size, seed=cfg.trainer.seed))

    def new_model() -> SeqModel:
        m = SeqModel(model_cfg)
        if centroids is not None:
            m.set_quantizer(centroids)
        if content:
            set_catalog(m, vocab, codes, np.asarray(item_content, dtype=np.float32))
        return m

    siblings = item_siblings(item_tokens, vocab.vocab_size) if cfg.model.item_softmax == "prefix" else None
    model = new_model()
    result = train(model, epoch_data, validate, cfg.trainer, out_dir=out_dir, softmax_groups=vocab.softmax_groups(),
                   siblings=siblings, ranks=ranks)
    serving, serving_result = None, None
    if cfg.refit_for_serving:
        # the served lists predict past each user's newest event, so the serving model learns from every
        # event: same recipe from the same initialisation, for the epochs validation chose, no holdout
        full = rec_sequences(sequences, item_tokens, cfg.data, held_out=False)
        refit_rng = np.random.default_rng(cfg.trainer.seed + ranks.rank)
        torch.manual_seed(cfg.trainer.seed)
        serving = new_model()
        serving_result = train(serving, lambda e: epoch_sequences(full, item_tokens, item_words, vocab, cfg.data, refit_rng),
                               None, cfg.trainer, softmax_groups=vocab.softmax_groups(), stop_after=result.best_epoch + 1,
                               siblings=siblings, ranks=ranks)
        serving.eval()
    return Fitted(model.eval(), vocab, words, result, serving, serving_result)
