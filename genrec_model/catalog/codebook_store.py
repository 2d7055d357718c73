"""Versioned codebook artifacts: `<root>/<version>/{codebook.npz, manifest.json}`.

The npz holds the frozen numpy assignment path (scaler, encoder weights, codebooks); the manifest
describes it (CONVENTIONS 11: later jobs read depth/width/dedup scheme from here). The version is
`cb-<YYYYmmddHHMMSS>-<hash8>`, hash8 = sha256 of the arrays + descriptive manifest fields, so two
different codebooks never share a version. Loading re-hashes the npz and checks shapes.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from genrec_model.catalog.frozen_rqvae import FrozenRQVAE
from genrec_model.config_loader import stable_hash

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "codebook.npz"


class CodebookError(ValueError):
    """A codebook artifact is missing, corrupt or not the one the caller expects."""


@dataclass(frozen=True)
class CodebookMeta:
    embedding_model: str  # e.g. "sentence-transformers/all-MiniLM-L6-v2"
    embedding_dim: int
    dedup_scheme: str  # "dedup" | "hybrid"
    train_sample_size: int
    metrics: dict[str, Any] = field(default_factory=dict)  # utilization, collision rate, recon mse...
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. rqvae config, collab fusion params


def _arrays(frozen: FrozenRQVAE) -> dict[str, np.ndarray]:
    out = {"mean": frozen.mean, "std": frozen.std, "codebooks": frozen.codebooks}
    for i, (w, b) in enumerate(zip(frozen.weights, frozen.biases)):
        out[f"w{i}"] = w
        out[f"b{i}"] = b
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # uncompressed, keys in insertion order -> deterministic bytes
    return buf.getvalue()


def save_codebook(root: str | os.PathLike, frozen: FrozenRQVAE, meta: CodebookMeta,
                  now: datetime | None = None) -> Path:
    """Write a new version under root; returns its directory. Atomic (tmp dir + rename)."""
    if meta.embedding_dim != frozen.input_dim:
        raise CodebookError(f"meta.embedding_dim={meta.embedding_dim} but the encoder takes {frozen.input_dim}")
    payload = _npz_bytes(_arrays(frozen))
    described = {
        "format_version": FORMAT_VERSION,
        "n_levels": frozen.n_levels,
        "codebook_size": frozen.codebook_size,
        "latent_dim": frozen.latent_dim,
        "n_encoder_layers": len(frozen.weights),
        **asdict(meta),
    }
    arrays_sha256 = stable_hash(payload, None)
    now = now or datetime.now(timezone.utc)
    version = f"cb-{now.strftime('%Y%m%d%H%M%S')}-{stable_hash([arrays_sha256, described], 8)}"
    manifest = {"version": version, "created_at": now.isoformat(), "arrays_sha256": arrays_sha256, **described}
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise CodebookError(f"{final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        (tmp / ARRAYS).write_bytes(payload)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError as e:
        raise CodebookError(f"no {MANIFEST} in {path}") from e
    except json.JSONDecodeError as e:
        raise CodebookError(f"corrupt {MANIFEST} in {path}: {e}") from e
    required = ("version", "format_version", "n_levels", "codebook_size", "latent_dim",
                "n_encoder_layers", "embedding_model", "embedding_dim", "dedup_scheme", "arrays_sha256")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise CodebookError(f"{path / MANIFEST} lacks {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise CodebookError(f"{path}: format_version {manifest['format_version']}, this code reads {FORMAT_VERSION}")
    return manifest


def load_codebook(path: str | os.PathLike, expect: dict[str, Any] | None = None) -> tuple[FrozenRQVAE, dict[str, Any]]:
    """Load and validate; `expect` maps manifest keys to required values (e.g. embedding_dim)."""
    path = Path(path)
    manifest = read_manifest(path)
    for key, want in (expect or {}).items():
        if manifest.get(key) != want:
            raise CodebookError(f"codebook {manifest['version']}: {key}={manifest.get(key)!r}, expected {want!r}")
    try:
        payload = (path / ARRAYS).read_bytes()
    except FileNotFoundError as e:
        raise CodebookError(f"no {ARRAYS} in {path}") from e
    if stable_hash(payload, None) != manifest["arrays_sha256"]:
        raise CodebookError(f"{path / ARRAYS} does not match the sha256 in its manifest (corrupt or replaced)")
    with np.load(io.BytesIO(payload)) as z:
        arrays = {k: z[k] for k in z.files}
    n_layers = manifest["n_encoder_layers"]
    frozen = FrozenRQVAE(
        mean=arrays["mean"], std=arrays["std"],
        weights=tuple(arrays[f"w{i}"] for i in range(n_layers)),
        biases=tuple(arrays[f"b{i}"] for i in range(n_layers)),
        codebooks=arrays["codebooks"],
    )
    shape = (manifest["n_levels"], manifest["codebook_size"], manifest["latent_dim"])
    if frozen.codebooks.shape != shape or frozen.input_dim != manifest["embedding_dim"] \
            or frozen.weights[-1].shape[0] != manifest["latent_dim"]:
        raise CodebookError(f"{path}: arrays {frozen.codebooks.shape}/{frozen.input_dim} disagree with manifest {shape}")
    return frozen, manifest
