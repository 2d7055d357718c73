"""Model artifacts on disk, read without torch (the decode path uses these readers).

`<models root>/<version>/`: `checkpoint.pt` (torch, see model_store), `items.parquet` (item_id, index,
codes: the item table the model was trained on), `train_manifest.json`; after export an `onnx/` folder
with the graphs and their `manifest.json` (docs/CONTRACTS.md). `<models root>/LATEST` names the newest
complete version.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec_model.config_loader import stable_hash
from genrec_model.model.sid_vocab import SidVocab

CHECKPOINT = "checkpoint.pt"
SERVING_CHECKPOINT = "serving_checkpoint.pt"  # the refit on every event (train.refit_for_serving)
ITEMS = "items.parquet"
TRAIN_MANIFEST = "train_manifest.json"
LATEST = "LATEST"
ONNX_DIR = "onnx"
ONNX_SERVING_DIR = "onnx_serving"
EXPORT_MANIFEST = "manifest.json"
PREFILL, STEP, SHARED_STEP = "prefill.onnx", "step.onnx", "step_shared.onnx"
HEAD = "head.npz"  # beside step_shared.onnx: output table (V, D) and logit bias (V,), float32
EXPORT_FORMAT_VERSION = 1
EXPORT_ITEMS = "items.parquet"  # in the onnx folder: the catalog the graphs decode (item_id, index, codes, seen)


class ManifestMismatchError(ValueError):
    """The exported model does not match what the caller expects (e.g. another codebook version)."""


@dataclass(frozen=True)
class ModelArtifact:
    """A trained model version as the jobs see it (no weights loaded)."""
    version: str
    path: str
    manifest: dict

    @property
    def codebook_version(self) -> str:
        return self.manifest["codebook_version"]

    @property
    def max_history(self) -> int:
        return int(self.manifest["fit_config"]["data"]["max_history"])

    @property
    def vocab(self) -> SidVocab:
        return SidVocab.from_dict(self.manifest["vocab"])

    @property
    def onnx_dir(self) -> str:
        return os.path.join(self.path, ONNX_DIR)

    def onnx_dir_for(self, split: str) -> str:
        """The export that decodes `split`: the serving refit for `serve` when there is one."""
        serving = os.path.join(self.path, ONNX_SERVING_DIR)
        return serving if split == "serve" and os.path.exists(os.path.join(serving, EXPORT_MANIFEST)) else self.onnx_dir

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item_ids (N,), codes (N, L) int64) in item-index order, as trained."""
        items = pd.read_parquet(os.path.join(self.path, ITEMS)).sort_values("index")
        return items["item_id"].to_numpy(), np.stack(items["codes"].to_numpy()).astype(np.int64)


def resolve_version(root: str, version: str = "") -> str:
    if version:
        return version
    try:
        with open(os.path.join(root, LATEST)) as f:
            return f.read().strip()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"no trained model under {root}: run the `train` stage first") from e


def read_model(root: str, version: str = "") -> ModelArtifact:
    """The trained model `version` (empty: LATEST) under `root`; raises if it is incomplete."""
    version = resolve_version(root, version)
    path = os.path.join(root, version)
    missing = [f for f in (TRAIN_MANIFEST, ITEMS, CHECKPOINT) if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(f"model {version} at {path} is incomplete: missing {missing}")
    with open(os.path.join(path, TRAIN_MANIFEST)) as f:
        return ModelArtifact(version, path, json.load(f))


def write_model_files(root: str, version: str, item_ids: np.ndarray, codes: np.ndarray, manifest: dict) -> str:
    """Item table and train manifest of a new version (the checkpoint is written by model_store)."""
    path = os.path.join(root, version)
    os.makedirs(path, exist_ok=True)
    pd.DataFrame({"item_id": item_ids, "index": np.arange(len(item_ids)),
                  "codes": [c.astype(np.int32) for c in codes]}).to_parquet(os.path.join(path, ITEMS))
    with open(os.path.join(path, TRAIN_MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1, default=str)
    return path


def publish_latest(root: str, version: str) -> None:
    tmp = os.path.join(root, LATEST + ".tmp")
    with open(tmp, "w") as f:
        f.write(version)
    os.replace(tmp, os.path.join(root, LATEST))


def write_export_items(onnx_dir: str, item_ids: np.ndarray, codes: np.ndarray, seen: np.ndarray) -> None:
    """The items an export can decode (for a content model: tonight's catalog), with whether the model
    saw each in training."""
    os.makedirs(onnx_dir, exist_ok=True)
    pd.DataFrame({"item_id": item_ids, "index": np.arange(len(item_ids)), "codes": [c.astype(np.int32) for c in codes],
                  "seen_in_training": np.asarray(seen, dtype=bool)}).to_parquet(os.path.join(onnx_dir, EXPORT_ITEMS))


def read_export_items(onnx_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item_ids, codes (N, L) int64, seen_in_training (N,) bool) of an export, in index order."""
    items = pd.read_parquet(os.path.join(onnx_dir, EXPORT_ITEMS)).sort_values("index")
    return (items["item_id"].to_numpy(), np.stack(items["codes"].to_numpy()).astype(np.int64),
            items["seen_in_training"].to_numpy())


def _export_payload(m: dict) -> dict:
    return {"vocab": m["vocab"], "model_config": m["model_config"], "codebook_version": m["codebook_version"]}


def export_manifest(vocab: SidVocab, model_config: dict, model_version: str, codebook_version: str, opset: int,
                    exporter: dict, torch_version: str, extra: dict | None = None) -> dict:
    m = {"format_version": EXPORT_FORMAT_VERSION, "model_version": model_version,
         "codebook_version": codebook_version, "vocab": vocab.to_dict(), "model_config": model_config}
    return {**m, "config_hash": stable_hash(_export_payload(m), 16), "opset": opset, "exporter": exporter,
            "torch_version": torch_version, "files": {"prefill": PREFILL, "step": STEP}, **(extra or {})}


def save_head(onnx_dir, weight: np.ndarray, bias: np.ndarray, query_tables: dict | None = None) -> None:
    """head.npz: the output head (V, D) and bias (V,); for an item_query "user"/"attend" model also its
    query tables (`SeqModel.item_query_tables`: query_shift, and query_q / query_o for "attend")."""
    arrays = {"weight": np.ascontiguousarray(weight, dtype=np.float32),
              "bias": np.ascontiguousarray(bias, dtype=np.float32)}
    for name, table in (query_tables or {}).items():
        arrays[name] = np.ascontiguousarray(table, dtype=np.float32)
    np.savez(os.path.join(onnx_dir, HEAD), **arrays)


def load_head(onnx_dir) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """(weight, bias, query tables or None), as save_head wrote them."""
    with np.load(os.path.join(onnx_dir, HEAD)) as z:
        tables = {k: np.ascontiguousarray(z[k]) for k in z.files if k.startswith("query_")} or None
        return np.ascontiguousarray(z["weight"]), np.ascontiguousarray(z["bias"]), tables


def write_export_manifest(onnx_dir: str, manifest: dict) -> None:
    os.makedirs(onnx_dir, exist_ok=True)
    tmp = os.path.join(onnx_dir, EXPORT_MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(onnx_dir, EXPORT_MANIFEST))


def read_export(onnx_dir: str, expected_codebook_version: str | None = None) -> dict:
    """Read and check an export's manifest.json; raises ManifestMismatchError on a codebook/vocab mismatch."""
    path = os.path.join(onnx_dir, EXPORT_MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {EXPORT_MANIFEST} in {onnx_dir}: not an exported genrec model "
                                "(or its export did not pass the parity gate)")
    with open(path) as f:
        m = json.load(f)
    if expected_codebook_version is not None and m["codebook_version"] != expected_codebook_version:
        raise ManifestMismatchError(
            f"model {m['model_version']} in {onnx_dir} was trained on codebook version "
            f"{m['codebook_version']!r}, but the SIDs in use are version {expected_codebook_version!r}; "
            "retrain/export the model on this codebook or decode with the matching codebook")
    vocab = SidVocab.from_dict(m["vocab"])
    if vocab.vocab_size != m["model_config"]["vocab_size"]:
        raise ManifestMismatchError(f"manifest vocab size {vocab.vocab_size} != model vocab {m['model_config']['vocab_size']}")
    if stable_hash(_export_payload(m), 16) != m["config_hash"]:
        raise ManifestMismatchError(f"{path}: config_hash does not match its contents (edited manifest?)")
    return m
