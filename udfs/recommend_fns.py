"""Spark partition function of the `recommend` stage.

The decoder (onnxruntime sessions + packed trie + item tables) is built once per Python worker per
run (keyed by model version and run id) and reused for every split and date; what differs per split
(popularity, serving settings) comes with each call. `recommend_users` is plain pandas/numpy, so tests
call it directly. Imports nothing from training: a worker needs onnxruntime, numpy, numba, pyarrow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec_model.decode.beam_search import decode
from genrec_model.decode.config import BeamSearchConfig, OrtConfig, trained_normalization
from genrec_model.decode.trie import build_trie
from genrec_model.model.sid_vocab import SidVocab, history_tokens
from genrec_model.serve.config import ServingConfig
from genrec_model.serve.serving import recommend

OUT_DDL = ("user_id string, recs array<struct<item_id: string, score: double, rank: int>>, is_fallback boolean, "
           "n_known bigint")


@dataclass
class Decoder:
    """One model version, ready to decode: built once per worker."""
    step_model: object
    trie: object
    level_starts: tuple[int, ...]
    item_tokens: np.ndarray      # (N, L) token ids per item index
    item_ids: np.ndarray         # (N,) item_id per index
    index: dict                  # item_id -> index
    max_history: int
    is_new: np.ndarray | None = None     # (N,) bool: the model never saw this item in training (None: no such item)


@dataclass(frozen=True)
class DecodeInputs:
    """What one split (or date) brings to the shared decoder."""
    popularity: np.ndarray       # (N,) interaction counts per item index
    beam: BeamSearchConfig
    serving: ServingConfig
    categories: np.ndarray | None = None  # (N,) category code per item index (category prior)
    new_item_beam: BeamSearchConfig | None = None  # search of the new items (serving.new_item_share > 0)
    judge: tuple | None = None   # (SemanticJudge, ItemSide over the decoder's items): serving.judge_weight or .ranker
    ranker: object | None = None  # serve.ranker.Ranker when serving.ranker (its features need `judge`)
    transitions: tuple | None = None  # (TransitionTable over the decoder's items, TransitionConfig): serving.ranker


_DECODERS: dict[tuple, Decoder] = {}


def beam_configs(rc, model_config: dict) -> tuple[BeamSearchConfig, BeamSearchConfig | None]:
    """The main search and (when the lists use new items) the new-item search of a RecommendConfig, scored
    as the model was trained unless `recommend.normalize` says otherwise."""
    normalize = rc.normalize
    if normalize == "auto":
        normalize = trained_normalization(model_config.get("item_softmax", "level"))
    beam = BeamSearchConfig(beam_width=rc.beam_width, top_k=rc.candidates, users_per_call=rc.users_per_call,
                            constrained=rc.constrained, normalize=normalize)
    new = None
    if rc.serving.uses_new_items:
        new = BeamSearchConfig(beam_width=rc.new_item_beam, top_k=rc.new_item_beam, users_per_call=rc.users_per_call,
                               constrained=True, normalize=normalize)
    return beam, new


def build_decoder(onnx_dir: str, item_ids: np.ndarray, codes: np.ndarray, max_history: int, threads: int,
                  use_gpu: bool | None, codebook_version: str, seen: np.ndarray | None = None) -> Decoder:
    """seen (N,) bool: the item was in the model's training catalog; the others are what the new-item search
    (reserved slots, boost) may return, scored as the main search scores them."""
    from genrec_model.decode.ort_step import load_step_model

    step_model = load_step_model(onnx_dir, OrtConfig(intra_op_threads=threads, use_gpu=use_gpu),
                                 expected_codebook_version=codebook_version)
    vocab = SidVocab.from_dict(step_model.manifest["vocab"])
    is_new = None
    if seen is not None and not np.all(seen):
        is_new = ~np.asarray(seen, dtype=bool)
    return Decoder(step_model, build_trie(codes, list(vocab.level_sizes)), vocab.level_starts,
                   vocab.codes_to_tokens(codes), item_ids, {i: n for n, i in enumerate(item_ids)}, max_history,
                   is_new)


def new_item_candidates(dec: Decoder, toks: list[np.ndarray], beam: BeamSearchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Best items the model never saw in training, per history: item indices (-1 padded) and log-probs --
    a search of the whole trie that may only pick them, so each keeps the score the main search gives it
    (with normalize="children" the normalizer of a prefix's items includes its warm items)."""
    return decode(dec.step_model, dec.trie, dec.level_starts, toks, beam, allowed_items=dec.is_new)


def known_histories(user_histories, dec: Decoder) -> list[np.ndarray]:
    """Histories (item_ids oldest first, or None) -> item-index histories (items the decoder lacks dropped)."""
    histories = []
    for h in user_histories:
        known = [dec.index.get(i, -1) for i in (h if h is not None else [])]
        histories.append(np.asarray([i for i in known if i >= 0], dtype=np.int64))
    return histories


def _recommend(user_histories, dec: Decoder, inputs: DecodeInputs):
    """Histories (item_ids oldest first, or None) -> (serving.Recs, item-index histories)."""
    histories = known_histories(user_histories, dec)
    recent = [h[-dec.max_history:] for h in histories]
    decodable = [n for n, h in enumerate(recent) if len(h)]
    serving = inputs.serving
    n_cand = inputs.beam.top_k + (serving.new_item_candidates if serving.ranker and dec.is_new is not None else 0)
    items = np.full((len(histories), n_cand), -1, dtype=np.int64)
    scores = np.full((len(histories), n_cand), -np.inf)
    new = None
    if decodable:
        toks = [history_tokens(recent[n], dec.item_tokens) for n in decodable]
        hist = [recent[n] for n in decodable]
        level0 = None
        if serving.ranker:
            cands, lp, level0 = decode(dec.step_model, dec.trie, dec.level_starts, toks, inputs.beam, first_level=True)
            cands, ranked = ranker_rescored(inputs, hist, cands, lp, level0, dec.is_new)
            items[decodable, :cands.shape[1]], scores[decodable, :cands.shape[1]] = cands, ranked
        else:
            items[decodable], scores[decodable] = decode(dec.step_model, dec.trie, dec.level_starts, toks, inputs.beam)
        if serving.uses_new_items and dec.is_new is not None and inputs.new_item_beam is not None:
            n_new = inputs.new_item_beam.top_k
            new = (np.full((len(histories), n_new), -1, dtype=np.int64), np.full((len(histories), n_new), -np.inf),
                   dec.is_new)
            new[0][decodable], new[1][decodable] = new_item_candidates(dec, toks, inputs.new_item_beam)
            if level0 is not None:  # on the ranker's scale, as the main candidates (scored as decoded items)
                new[1][decodable] = ranker_rescored(inputs, hist, new[0][decodable], new[1][decodable], level0, None)[1]
        if serving.judge_weight:
            scores[decodable] = judge_rescored(inputs, hist, items[decodable], scores[decodable])
            if new is not None:
                new[1][decodable] = judge_rescored(inputs, hist, new[0][decodable], new[1][decodable])
    return recommend(items, scores, histories, inputs.popularity, serving, inputs.categories, new), histories


def ranker_rescored(inputs: DecodeInputs, histories: list[np.ndarray], items: np.ndarray, scores: np.ndarray,
                    first_level: np.ndarray, is_new: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (U, C) -> the ranker's candidates (U, C + serving.new_item_candidates: the new items closest in
    content join them, serve/new_items.py) and their ranker scores; -1 slots and -inf scores stay -inf."""
    from genrec_model.serve.ranker import ranker_candidates

    if inputs.ranker is None or inputs.judge is None or inputs.transitions is None:
        raise ValueError("serving.ranker needs the ranker, its judge and the transition table "
                         "(DecodeInputs.ranker, .judge, .transitions)")
    judge, side = inputs.judge
    s = inputs.serving
    items, scores, feats = ranker_candidates(judge, side, histories, items, scores, first_level, inputs.transitions,
                                             is_new, s.new_item_candidates, s.new_item_knn)
    return items, inputs.ranker.score(feats, (items >= 0) & (scores > -np.inf))


def judge_rescored(inputs: DecodeInputs, histories: list[np.ndarray], items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Candidate scores (U, C) plus serving.judge_weight * the judge's score of each candidate (-1 slots keep -inf)."""
    if inputs.judge is None:
        raise ValueError("serving.judge_weight > 0 needs the judge (DecodeInputs.judge)")
    judge, side = inputs.judge
    semantic = judge.score(side, histories, np.maximum(items, 0))
    return np.where(items >= 0, scores + inputs.serving.judge_weight * semantic, scores)


def recommend_users(users: pd.DataFrame, dec: Decoder, inputs: DecodeInputs) -> pd.DataFrame:
    """(user_id, history: item_ids oldest first) -> (user_id, recs, is_fallback, n_known)."""
    recs, histories = _recommend(users["history"], dec, inputs)
    out = []
    for u in range(len(users)):
        row = [{"item_id": str(dec.item_ids[i]), "score": float(s), "rank": r + 1}
               for r, (i, s) in enumerate(zip(recs.items[u], recs.scores[u])) if i >= 0]
        out.append(row)
    return pd.DataFrame({"user_id": users["user_id"].to_numpy(), "recs": out, "is_fallback": recs.fallback,
                         "n_known": [len(h) for h in histories]})


def recommend_batch(batch, dec: Decoder, inputs: DecodeInputs):
    """The same as `recommend_users` on an Arrow RecordBatch (user_id, history), returning a RecordBatch of
    OUT_DDL built from the numpy lists directly (no per-slot Python objects)."""
    import pyarrow as pa

    recs, histories = _recommend(batch.column("history").to_pylist(), dec, inputs)
    valid = recs.items >= 0
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    rows, cols = np.nonzero(valid)
    slot = pa.StructArray.from_arrays(
        [pa.array(dec.item_ids[recs.items[rows, cols]].astype(str), type=pa.string()),
         pa.array(recs.scores[rows, cols].astype(np.float64)), pa.array((cols + 1).astype(np.int32))],
        names=["item_id", "score", "rank"])
    return pa.RecordBatch.from_arrays(
        [batch.column("user_id"), pa.ListArray.from_arrays(pa.array(offsets), slot),
         pa.array(np.asarray(recs.fallback, dtype=bool)), pa.array([len(h) for h in histories], type=pa.int64())],
        names=["user_id", "recs", "is_fallback", "n_known"])


def make_recommend_fn(decoder_key: str, onnx_dir: str, item_ids: np.ndarray, codes: np.ndarray, max_history: int,
                      use_gpu: bool | None, codebook_version: str, inputs: DecodeInputs, seen: np.ndarray | None = None):
    """mapInArrow body; `decoder_key` names the decoder ("<model version>:<export>:<run id>"), so the worker
    keeps it across the run's splits and dates (the evaluation export and the serving refit side by side)
    and drops a previous run's."""
    def recommend_partition(batches):
        from udfs.session import task_cores

        key = (decoder_key, task_cores())
        if key not in _DECODERS:
            run = decoder_key.rsplit(":", 1)[-1]
            for old in [k for k in _DECODERS if k[0].rsplit(":", 1)[-1] != run]:  # another run's models
                del _DECODERS[old]
            _DECODERS[key] = build_decoder(onnx_dir, item_ids, codes, max_history, task_cores(), use_gpu,
                                           codebook_version, seen)
        for batch in batches:
            if batch.num_rows:
                yield recommend_batch(batch, _DECODERS[key], inputs)
    return recommend_partition


def popularity_per_item(counts: pd.Series, item_ids: np.ndarray) -> np.ndarray:
    """(N,) float64 counts per decodable item from an item_id -> count Series (split_fns.history_item_counts)."""
    return counts.reindex(pd.Index(item_ids)).fillna(0).to_numpy(dtype=np.float64)
