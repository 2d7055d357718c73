"""Spark partition function of the `recommend` stage.

`make_recommend_fn` returns a mapInPandas body; the decoder (onnxruntime sessions + packed trie) is
built once per Python worker and cached by model path, and `recommend_users` is plain pandas/numpy
so tests call it directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec_model.decode.beam_search import decode
from genrec_model.decode.config import BeamSearchConfig
from genrec_model.serve.serving import recommend
from genrec_model.serve.config import ServingConfig
from genrec_model.model.sid_vocab import history_tokens
from genrec_model.decode.trie import build_trie

OUT_DDL = ("user_id string, recs array<struct<item_id: string, score: double, rank: int>>, is_fallback boolean, "
           "n_known bigint")


@dataclass
class Decoder:
    step_model: object
    trie: object
    level_starts: tuple[int, ...]
    item_tokens: np.ndarray      # (N, L) token ids per item index
    item_ids: np.ndarray         # (N,) item_id per index
    index: dict                  # item_id -> index
    popularity: np.ndarray       # (N,) interaction counts
    beam: BeamSearchConfig
    serving: ServingConfig
    max_history: int
    categories: np.ndarray | None = None  # (N,) category code per item index (category prior)


_DECODERS: dict[tuple, Decoder] = {}


def build_decoder(onnx_dir: str, item_ids: np.ndarray, codes: np.ndarray, popularity: np.ndarray,
                  beam: BeamSearchConfig, serving: ServingConfig, max_history: int, threads: int,
                  use_gpu: bool | None, codebook_version: str, categories: np.ndarray | None = None) -> Decoder:
    from genrec_model.model.fit import level_starts
    from genrec_model.decode.ort_step import load_step_model
    from genrec_model.decode.config import OrtConfig
    from genrec_model.model.sid_vocab import SidVocab

    step_model = load_step_model(onnx_dir, OrtConfig(intra_op_threads=threads, use_gpu=use_gpu),
                                 expected_codebook_version=codebook_version)
    vocab = SidVocab.from_dict(step_model.manifest["vocab"])
    return Decoder(step_model, build_trie(codes, list(vocab.level_sizes)), level_starts(vocab),
                   vocab.codes_to_tokens(codes), item_ids, {i: n for n, i in enumerate(item_ids)},
                   popularity, beam, serving, max_history, categories)


def recommend_users(users: pd.DataFrame, dec: Decoder) -> pd.DataFrame:
    """(user_id, history: item_ids oldest first) -> (user_id, recs, is_fallback, n_known)."""
    histories = []
    for h in users["history"]:
        known = [dec.index.get(i, -1) for i in (h if h is not None else [])]
        histories.append(np.asarray([i for i in known if i >= 0], dtype=np.int64))
    recent = [h[-dec.max_history:] for h in histories]
    decodable = [n for n, h in enumerate(recent) if len(h)]
    n_cand = dec.beam.top_k
    items = np.full((len(users), n_cand), -1, dtype=np.int64)
    scores = np.full((len(users), n_cand), -np.inf)
    if decodable:
        toks = [history_tokens(recent[n], dec.item_tokens) for n in decodable]
        items[decodable], scores[decodable] = decode(dec.step_model, dec.trie, dec.level_starts, toks, dec.beam)
    recs = recommend(items, scores, histories, dec.popularity, dec.serving, dec.categories)
    out = []
    for u in range(len(users)):
        row = [{"item_id": str(dec.item_ids[i]), "score": float(s), "rank": r + 1}
               for r, (i, s) in enumerate(zip(recs.items[u], recs.scores[u])) if i >= 0]
        out.append(row)
    return pd.DataFrame({"user_id": users["user_id"].to_numpy(), "recs": out, "is_fallback": recs.fallback,
                         "n_known": [len(h) for h in histories]})


def make_recommend_fn(onnx_dir: str, item_ids: np.ndarray, codes: np.ndarray, popularity: np.ndarray,
                      beam: BeamSearchConfig, serving: ServingConfig, max_history: int, use_gpu: bool | None,
                      codebook_version: str, cache_key: str, categories: np.ndarray | None = None):
    def recommend_partition(batches):
        from udfs.session import task_cores

        key = (cache_key, task_cores())
        if key not in _DECODERS:
            _DECODERS.clear()
            _DECODERS[key] = build_decoder(onnx_dir, item_ids, codes, popularity, beam, serving, max_history,
                                           task_cores(), use_gpu, codebook_version, categories)
        for pdf in batches:
            yield recommend_users(pdf, _DECODERS[key])
    return recommend_partition
