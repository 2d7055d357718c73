"""ONNX export of a trained SeqModel: `prefill.onnx`, `step.onnx` and `manifest.json` (docs/CONTRACTS.md).

The dynamo exporter (torch.onnx.export(dynamo=True), needs onnxscript) is tried first; if it fails
on the dynamic KV cache the TorchScript exporter is used. The manifest records which one ran.
`OrtStepModel` runs the two graphs with onnxruntime behind the StepModel protocol.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab
from genrec_model.model.config import ExportConfig

MANIFEST = "manifest.json"
PREFILL, STEP = "prefill.onnx", "step.onnx"
FORMAT_VERSION = 1


class ManifestMismatchError(ValueError):
    """The exported model does not match what the caller expects (e.g. another codebook version)."""


class _Prefill(nn.Module):
    def __init__(self, model: SeqModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        h, k, v = self.model.hidden(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        return self.model.lm_head(h[:, -1]), k, v  # left padding: the last column is every row's last token


class _Step(nn.Module):
    def __init__(self, model: SeqModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, past_k, past_v):
        logits, k, v = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  past_k=past_k, past_v=past_v)
        return logits[:, -1], k, v


def config_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sample_inputs(model: SeqModel):
    B, T, c = 2, 5, model.cfg  # sample shapes only: every axis is exported dynamic
    ids = torch.randint(3, c.vocab_size, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :2] = 0
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    k = torch.randn(c.n_layer, B, c.n_head, T, c.head_dim)
    step = (ids[:, :1], torch.cat([mask, torch.ones(B, 1, dtype=torch.long)], 1), pos[:, -1:] + 1, k, torch.randn_like(k))
    return (ids, mask, pos), step


def _export_one(module: nn.Module, args: tuple, path: str, names_in: list[str], dyn: dict, opset: int,
                prefer_dynamo: bool) -> str:
    names_out = ["logits", "present_k", "present_v"]
    if prefer_dynamo:
        try:
            Dim = torch.export.Dim
            shapes = {n: {ax: Dim.AUTO for ax in axes} for n, axes in dyn.items() if n in names_in}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prog = torch.onnx.export(module, args, input_names=names_in, output_names=names_out,
                                         dynamic_shapes=shapes, opset_version=opset, dynamo=True)
            prog.save(path)
            return "dynamo"
        except Exception as e:  # noqa: BLE001 - any exporter failure falls back to TorchScript
            warnings.warn(f"dynamo ONNX export failed ({type(e).__name__}: {e}); using the TorchScript exporter")
    torch.onnx.export(module, args, path, input_names=names_in, output_names=names_out,
                      dynamic_axes={n: {ax: f"{n}_{ax}" for ax in axes} for n, axes in dyn.items()},
                      opset_version=opset, dynamo=False)
    return "torchscript"


def export_onnx(
    model: SeqModel,
    vocab: SidVocab,
    out_dir: str,
    model_version: str,
    codebook_version: str,
    cfg: ExportConfig = ExportConfig(),
    extra: dict | None = None,
) -> dict:
    """Write prefill.onnx, step.onnx and manifest.json into out_dir; returns the manifest."""
    if vocab.vocab_size != model.cfg.vocab_size:
        raise ValueError(f"vocab size {vocab.vocab_size} != model vocab {model.cfg.vocab_size}")
    os.makedirs(out_dir, exist_ok=True)
    model = model.eval().cpu()
    prefill_args, step_args = _sample_inputs(model)
    kv = {1: "batch", 3: "past"}
    with torch.no_grad():
        e1 = _export_one(_Prefill(model), prefill_args, os.path.join(out_dir, PREFILL),
                         ["input_ids", "attention_mask", "position_ids"],
                         {"input_ids": (0, 1), "attention_mask": (0, 1), "position_ids": (0, 1),
                          "logits": (0,), "present_k": (1, 3), "present_v": (1, 3)}, cfg.opset, cfg.prefer_dynamo)
        e2 = _export_one(_Step(model), step_args, os.path.join(out_dir, STEP),
                         ["input_ids", "attention_mask", "position_ids", "past_k", "past_v"],
                         {"input_ids": (0,), "attention_mask": (0, 1), "position_ids": (0,), "past_k": tuple(kv),
                          "past_v": tuple(kv), "logits": (0,), "present_k": (1, 3), "present_v": (1, 3)},
                         cfg.opset, cfg.prefer_dynamo)
    manifest = build_manifest(vocab, model.cfg.to_dict(), model_version, codebook_version, cfg.opset,
                              {"prefill": e1, "step": e2}, extra)
    write_manifest(out_dir, manifest)
    return manifest


def build_manifest(vocab: SidVocab, model_config: dict, model_version: str, codebook_version: str, opset: int,
                   exporter: dict, extra: dict | None = None) -> dict:
    payload = {"vocab": vocab.to_dict(), "model_config": model_config, "codebook_version": codebook_version}
    return {
        "format_version": FORMAT_VERSION,
        "model_version": model_version,
        "codebook_version": codebook_version,
        "vocab": vocab.to_dict(),
        "model_config": model_config,
        "config_hash": config_hash(payload),
        "opset": opset,
        "exporter": exporter,
        "torch_version": torch.__version__,
        "files": {"prefill": PREFILL, "step": STEP},
        **(extra or {}),
    }


def write_manifest(out_dir: str, manifest: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)


def load_manifest(model_dir: str, expected_codebook_version: str | None = None) -> dict:
    """Read and check manifest.json; raises ManifestMismatchError on a codebook/vocab mismatch."""
    path = os.path.join(model_dir, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {MANIFEST} in {model_dir}: not an exported genrec model")
    with open(path) as f:
        m = json.load(f)
    if expected_codebook_version is not None and m["codebook_version"] != expected_codebook_version:
        raise ManifestMismatchError(
            f"model {m['model_version']} in {model_dir} was trained on codebook version "
            f"{m['codebook_version']!r}, but the SIDs in use are version {expected_codebook_version!r}; "
            "retrain/export the model on this codebook or decode with the matching codebook")
    vocab = SidVocab.from_dict(m["vocab"])
    if vocab.vocab_size != m["model_config"]["vocab_size"]:
        raise ManifestMismatchError(f"manifest vocab size {vocab.vocab_size} != model vocab {m['model_config']['vocab_size']}")
    payload = {"vocab": m["vocab"], "model_config": m["model_config"], "codebook_version": m["codebook_version"]}
    if config_hash(payload) != m["config_hash"]:
        raise ManifestMismatchError(f"{path}: config_hash does not match its contents (edited manifest?)")
    return m
