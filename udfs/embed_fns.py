"""Spark partition function of the `embed` stage: catalog rows -> item_embeddings rows.

The encoder is loaded once per Python worker (cached by its settings) and reused by
every partition that worker runs; `embed_items` is plain pandas, so tests call it directly.
"""
from __future__ import annotations

import datetime as dt

import pandas as pd

from genrec_model.catalog.text_encoder import TextEncoder, render_text, weights_fingerprint

_ENCODERS: dict[tuple, TextEncoder] = {}


def get_encoder(model_path: str, max_length: int, batch_size: int, threads: int) -> TextEncoder:
    key = (model_path, max_length, batch_size, threads)
    if key not in _ENCODERS:
        _ENCODERS.clear()  # one encoder per worker at a time
        _ENCODERS[key] = TextEncoder(model_path, max_length, batch_size, threads)
    return _ENCODERS[key]


def embed_items(catalog: pd.DataFrame, encoder: TextEncoder, template: list[str], separator: str,
                model_name: str, template_hash: str, now: dt.datetime) -> pd.DataFrame:
    texts = [render_text(row, template, separator) for row in catalog.to_dict("records")]
    vectors = encoder.encode(texts)
    return pd.DataFrame({"item_id": catalog["item_id"].to_numpy(), "embedding": list(vectors),
                         "model_name": model_name, "text_hash": catalog["text_hash"].to_numpy(),
                         "template_hash": template_hash, "updated_at": pd.Timestamp(now)})


def make_embed_fn(model_path: str, max_length: int, batch_size: int, template: list[str], separator: str,
                  model_name: str, template_hash: str, now: dt.datetime, fingerprint: str | None = None):
    """`fingerprint`: the driver's `weights_fingerprint(model_path)`, from which `model_name` was derived;
    a worker that finds other weights at `model_path` fails instead of mislabelling its vectors."""
    def embed_partition(batches):
        from udfs.session import task_cores

        if fingerprint is not None and weights_fingerprint(model_path) != fingerprint:
            raise RuntimeError(f"embed: the weights at {model_path} on this worker differ from the driver's "
                               f"(recorded as {model_name!r})")
        encoder = get_encoder(model_path, max_length, batch_size, task_cores())
        for pdf in batches:
            if len(pdf):
                yield embed_items(pdf, encoder, template, separator, model_name, template_hash, now)
    return embed_partition
