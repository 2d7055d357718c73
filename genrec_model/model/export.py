"""ONNX export of a trained SeqModel: `prefill.onnx`, `step.onnx`, optionally `step_shared.onnx`
(docs/CONTRACTS.md), and their manifest.

The dynamo exporter (torch.onnx.export(dynamo=True), needs onnxscript) is tried first; if it fails
on the dynamic KV cache the TorchScript exporter is used. The manifest records which one ran.
`genrec_model.decode.ort_step` runs the graphs with onnxruntime behind the StepModel protocol.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from genrec_model.model.artifacts import PREFILL, SHARED_STEP, STEP, export_manifest, save_head
from genrec_model.model.config import ExportConfig
from genrec_model.model.seq_model import SeqModel
from genrec_model.model.sid_vocab import SidVocab


class _Prefill(nn.Module):
    def __init__(self, model: SeqModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        h, k, v = self.model.hidden(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        if self.model.cfg.item_query == "attend":  # the history's keys for the item level's read
            ik, iv = self.model.item_keys(h)
            return h[:, -1], k, v, ik, iv
        return h[:, -1], k, v  # left padding: the last column is every row's last token


class _Step(nn.Module):
    def __init__(self, model: SeqModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, past_k, past_v):
        logits, k, v = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  past_k=past_k, past_v=past_v)
        return logits[:, -1], k, v


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
                prefer_dynamo: bool, names_out: tuple[str, ...] = ("logits", "present_k", "present_v")) -> str:
    names_out = list(names_out)
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
    """Write prefill.onnx, step.onnx and head.npz into out_dir; returns their manifest. The caller publishes
    it (`artifacts.write_export_manifest`) only after the parity gate: without it nothing loads the graphs.
    prefill.onnx returns the last position's hidden state; its logits are hidden @ W.T + b with head.npz,
    computed by the decoder for the columns it needs."""
    if vocab.vocab_size != model.cfg.vocab_size:
        raise ValueError(f"vocab size {vocab.vocab_size} != model vocab {model.cfg.vocab_size}")
    os.makedirs(out_dir, exist_ok=True)
    model = model.eval().cpu()
    prefill_args, step_args = _sample_inputs(model)
    kv = {1: "batch", 3: "past"}
    with torch.no_grad():
        attend = model.cfg.item_query == "attend"
        e1 = _export_one(_Prefill(model), prefill_args, os.path.join(out_dir, PREFILL),
                         ["input_ids", "attention_mask", "position_ids"],
                         {"input_ids": (0, 1), "attention_mask": (0, 1), "position_ids": (0, 1),
                          "hidden": (0,), "present_k": (1, 3), "present_v": (1, 3),
                          "item_k": (0, 1), "item_v": (0, 1)}, cfg.opset,
                         cfg.prefer_dynamo, ("hidden", "present_k", "present_v") + (("item_k", "item_v") if attend else ()))
        e2 = _export_one(_Step(model), step_args, os.path.join(out_dir, STEP),
                         ["input_ids", "attention_mask", "position_ids", "past_k", "past_v"],
                         {"input_ids": (0,), "attention_mask": (0, 1), "position_ids": (0,), "past_k": tuple(kv),
                          "past_v": tuple(kv), "logits": (0,), "present_k": (1, 3), "present_v": (1, 3)},
                         cfg.opset, cfg.prefer_dynamo)
        w, b = model.head_weights()
        tables = model.item_query_tables()
    save_head(Path(out_dir), w.detach().float().numpy(), b.detach().float().numpy(),
              None if tables is None else {k: t.detach().float().numpy() for k, t in tables.items()})
    return export_manifest(vocab, model.cfg.to_dict(), model_version, codebook_version, cfg.opset,
                           {"prefill": e1, "step": e2}, torch.__version__, extra)


class _SharedStep(nn.Module):
    def __init__(self, model: SeqModel):
        super().__init__()
        self.model = model.eval()

    def forward(self, input_ids, position_ids, prefix_mask, prefix_k, prefix_v, suffix_k, suffix_v):
        return self.model.shared_prefix_step(input_ids, position_ids, prefix_mask, prefix_k, prefix_v, suffix_k,
                                             suffix_v)


def export_shared_step(model, out_dir: str | Path, opset: int = 18) -> Path:
    """Write step_shared.onnx (`SeqModel.shared_prefix_step`, hidden states out) next to prefill.onnx and
    head.npz (export_onnx writes both first); returns the graph's path.
    Sample shapes avoid 0/1 so the exporter keeps every axis dynamic."""
    c = model.cfg
    B, W, T, S = 2, 3, 5, 2
    N = B * W
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :2] = 0
    args = (
        torch.randint(3, c.vocab_size, (N, 1)),
        torch.full((N, 1), T, dtype=torch.long),
        mask,
        torch.randn(c.n_layer, B, c.n_head, T, c.head_dim),
        torch.randn(c.n_layer, B, c.n_head, T, c.head_dim),
        torch.randn(c.n_layer, N, c.n_head, S, c.head_dim),
        torch.randn(c.n_layer, N, c.n_head, S, c.head_dim),
    )
    names = ["input_ids", "position_ids", "prefix_mask", "prefix_k", "prefix_v", "suffix_k", "suffix_v"]
    auto = torch.export.Dim.AUTO
    shapes = {
        "input_ids": {0: auto}, "position_ids": {0: auto}, "prefix_mask": {0: auto, 1: auto},
        "prefix_k": {1: auto, 3: auto}, "prefix_v": {1: auto, 3: auto},
        "suffix_k": {1: auto, 3: auto}, "suffix_v": {1: auto, 3: auto},
    }
    path = Path(out_dir) / SHARED_STEP
    with torch.no_grad():
        prog = torch.onnx.export(_SharedStep(model), args, input_names=names,
                                 output_names=["hidden", "suffix_k_out", "suffix_v_out"],
                                 dynamic_shapes=shapes, opset_version=opset, dynamo=True)
    prog.save(str(path))
    return path


def quantize_int8(out_dir: str | Path) -> list[str]:
    """Rewrite the graphs in out_dir with int8 weights (onnxruntime dynamic quantization of MatMul/Gemm;
    activations quantized per call). Returns the graphs rewritten."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    done = []
    for name in (PREFILL, STEP, SHARED_STEP):
        path = Path(out_dir) / name
        if path.exists():
            tmp = path.with_suffix(".int8.onnx")
            quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
            os.replace(tmp, path)
            done.append(name)
    return done
