"""StepModels (docs/CONTRACTS.md) over the exported ONNX graphs with onnxruntime.

- `OrtStepModel`: prefill.onnx + step.onnx (the contract graphs). The KV cache lives in numpy arrays
  between calls; `reorder` gathers beam rows (also B users -> B * beam), i.e. every beam carries and
  copies its own copy of the history KV.
- `OrtSharedPrefixStepModel`: prefill.onnx + step_shared.onnx (`export_shared_step`), which keeps the
  history KV once per user and only the decoded tokens' KV per beam: 2-2.5x faster decoding on CPU
  (benchmarks/decode_bench.py). `load_step_model` picks it when the graph is there.

CUDA is used only when onnxruntime offers it AND a CUDA device is actually visible, so a
CPU-only worker with onnxruntime-gpu installed never tries (and never logs) a CUDA session.
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from genrec_model.decode.config import OrtConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrtState:
    past_k: np.ndarray  # (n_layer, N, H, P, hd) float32
    past_v: np.ndarray
    attention_mask: np.ndarray  # (N, P) int64
    next_position: np.ndarray  # (N,) int64


def cuda_device_visible() -> bool:
    """A CUDA device node exists and CUDA_VISIBLE_DEVICES does not hide all devices."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def choose_providers(cfg: OrtConfig) -> list:
    import onnxruntime as ort

    gpu_ok = "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_visible()
    if cfg.use_gpu and not gpu_ok:
        raise RuntimeError("use_gpu=True but no CUDAExecutionProvider with a visible CUDA device")
    if gpu_ok and cfg.use_gpu is not False:
        return [("CUDAExecutionProvider", {"device_id": cfg.gpu_device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _open_sessions(model_dir: str | Path, step_file: str, cfg: OrtConfig, expected_codebook_version: str | None):
    """(manifest, providers, prefill session, step session) for an exported model folder."""
    import onnxruntime as ort

    from genrec_model.model.export import load_manifest

    model_dir = Path(model_dir)
    manifest = load_manifest(str(model_dir), expected_codebook_version)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.intra_op_threads
    opts.inter_op_num_threads = cfg.inter_op_threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = choose_providers(cfg)
    prefill = ort.InferenceSession(str(model_dir / "prefill.onnx"), opts, providers=providers)
    step = ort.InferenceSession(str(model_dir / step_file), opts, providers=providers)
    log.info("onnxruntime providers: %s", prefill.get_providers())
    return manifest, providers, prefill, step


def _run_prefill(sess, input_ids, attention_mask, position_ids):
    """prefill.onnx on int64 inputs -> (logits, present_k, present_v, mask, position_ids)."""
    ids, mask, pos = (np.ascontiguousarray(a, dtype=np.int64) for a in (input_ids, attention_mask, position_ids))
    logits, k, v = sess.run(["logits", "present_k", "present_v"],
                            {"input_ids": ids, "attention_mask": mask, "position_ids": pos})
    return logits, k, v, mask, pos


class OrtStepModel:
    def __init__(self, model_dir: str | Path, cfg: OrtConfig = OrtConfig(), expected_codebook_version: str | None = None):
        self.manifest, self.providers, self.prefill_sess, self.step_sess = _open_sessions(
            model_dir, "step.onnx", cfg, expected_codebook_version)
        self.vocab_size = int(self.manifest["model_config"]["vocab_size"])

    @property
    def on_gpu(self) -> bool:
        return "CUDAExecutionProvider" in self.prefill_sess.get_providers()

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> tuple[np.ndarray, OrtState]:
        logits, k, v, mask, pos = _run_prefill(self.prefill_sess, input_ids, attention_mask, position_ids)
        return logits, OrtState(k, v, mask, pos[:, -1] + 1)

    def step(self, tokens: np.ndarray, state: OrtState) -> tuple[np.ndarray, OrtState]:
        n = state.attention_mask.shape[0]
        mask = np.concatenate([state.attention_mask, np.ones((n, 1), dtype=np.int64)], axis=1)  # (N, P+1)
        logits, k, v = self.step_sess.run(
            ["logits", "present_k", "present_v"],
            {
                "input_ids": np.ascontiguousarray(tokens, dtype=np.int64).reshape(n, 1),
                "attention_mask": mask,
                "position_ids": state.next_position.reshape(n, 1),
                "past_k": state.past_k,
                "past_v": state.past_v,
            },
        )
        return logits, OrtState(k, v, mask, state.next_position + 1)

    def reorder(self, state: OrtState, rows: np.ndarray) -> OrtState:
        rows = np.asarray(rows, dtype=np.int64)
        return OrtState(
            np.take(state.past_k, rows, axis=1),
            np.take(state.past_v, rows, axis=1),
            state.attention_mask[rows],
            state.next_position[rows],
        )


# ---------------------------------------------------------------- shared-prefix step (history KV stored once per user)

SHARED_STEP = "step_shared.onnx"


def _shared_step_module(model):
    """Step over rows laid out as B users x W beams (row = user * W + beam), attending to the
    user's history KV `prefix_k/v` (n_layer, B, H, T, hd) stored ONCE per user, plus the per-beam KV of
    the tokens decoded so far `suffix_k/v` (n_layer, N, H, S, hd). Same math as SeqModel with a KV cache,
    but a step reads/copies B*T + N*S cache entries instead of N*(T+S) (N = B*W, S <= L-1 << T)."""
    import math

    import torch
    import torch.nn as nn

    class SharedPrefixStep(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m.eval()

        def forward(self, input_ids, position_ids, prefix_mask, prefix_k, prefix_v, suffix_k, suffix_v, head_ids):
            m = self.m
            n_head, hd = m.cfg.n_head, m.cfg.head_dim
            B, T = prefix_mask.shape
            N = input_ids.shape[0]
            D = m.cfg.d_model
            scale = 1.0 / math.sqrt(hd)
            x = m.wte(input_ids) + m.wpe(position_ids)  # (N, 1, D)
            neg = torch.finfo(x.dtype).min
            bias_p = torch.where(prefix_mask.bool(), 0.0, neg).to(x.dtype)[:, None, None, :]  # (B, 1, 1, T)
            ks, vs = [], []
            for i, blk in enumerate(m.h):
                q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(D, dim=2)  # (N, 1, D) each
                k = k.reshape(N, n_head, 1, hd)  # (N, H, 1, hd)
                v = v.reshape(N, n_head, 1, hd)
                sk = torch.cat([suffix_k[i], k], dim=2)  # (N, H, S+1, hd)
                sv = torch.cat([suffix_v[i], v], dim=2)
                ks.append(sk)
                vs.append(sv)
                qb = q.reshape(B, -1, n_head, hd).transpose(1, 2)  # (B, H, W, hd)
                att_p = (qb @ prefix_k[i].transpose(-2, -1)) * scale + bias_p  # (B, H, W, T)
                qn = q.reshape(N, n_head, 1, hd)  # (N, H, 1, hd)
                att_s = (qn @ sk.transpose(-2, -1)) * scale  # (N, H, 1, S+1)
                att_s = att_s.reshape(B, -1, n_head, sk.shape[2]).transpose(1, 2)  # (B, H, W, S+1)
                att = torch.softmax(torch.cat([att_p, att_s], dim=-1), dim=-1)
                y_p = att[..., :T] @ prefix_v[i]  # (B, H, W, hd)
                p_s = att[..., T:].transpose(1, 2).reshape(N, n_head, 1, sk.shape[2])  # (N, H, 1, S+1)
                y_s = (p_s @ sv).reshape(B, -1, n_head, hd).transpose(1, 2)  # (B, H, W, hd)
                y = (y_p + y_s).transpose(1, 2).reshape(N, 1, D)
                x = x + blk.attn.c_proj(y)
                x = x + blk.mlp(blk.ln_2(x))
            w = m.lm_head.weight.index_select(0, head_ids)  # (K, D): only the token ids beam search scores
            logits = m.ln_f(x)[:, -1] @ w.t()  # (N, K)
            return logits, torch.stack(ks), torch.stack(vs)

    return SharedPrefixStep(model).eval()


def export_shared_step(model, out_dir: str | Path, opset: int = 18) -> Path:
    """Write step_shared.onnx (see `_shared_step_module`) next to prefill.onnx; returns its path.
    Sample shapes avoid 0/1 so the exporter keeps every axis dynamic."""
    import torch

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
        torch.arange(2, min(7, c.vocab_size)),
    )
    names = ["input_ids", "position_ids", "prefix_mask", "prefix_k", "prefix_v", "suffix_k", "suffix_v", "head_ids"]
    auto = torch.export.Dim.AUTO
    shapes = {
        "input_ids": {0: auto}, "position_ids": {0: auto}, "prefix_mask": {0: auto, 1: auto},
        "prefix_k": {1: auto, 3: auto}, "prefix_v": {1: auto, 3: auto},
        "suffix_k": {1: auto, 3: auto}, "suffix_v": {1: auto, 3: auto}, "head_ids": {0: auto},
    }
    path = Path(out_dir) / SHARED_STEP
    with torch.no_grad():
        prog = torch.onnx.export(_shared_step_module(model), args, input_names=names,
                                 output_names=["logits", "suffix_k_out", "suffix_v_out"],
                                 dynamic_shapes=shapes, opset_version=opset, dynamo=True)
    prog.save(str(path))
    return path


@dataclass(frozen=True)
class SharedState:
    prefix_k: np.ndarray  # (n_layer, B, H, T, hd) history KV, once per user
    prefix_v: np.ndarray
    prefix_mask: np.ndarray  # (B, T) int64
    suffix_k: np.ndarray  # (n_layer, N, H, S, hd) KV of decoded tokens, N = B * W rows
    suffix_v: np.ndarray
    next_position: np.ndarray  # (N,) int64


class OrtSharedPrefixStepModel:
    """StepModel over prefill.onnx + step_shared.onnx. Rows must stay grouped by user (B users x W
    beams, row = user * W + beam); `reorder` checks it, which beam search always satisfies.
    `step(..., head_ids=ids)` returns logits for those token ids only (N, len(ids)): beam search asks
    for the next level's range, which skips most of the LM head when the vocabulary has item tokens."""

    accepts_head_ids = True

    def __init__(self, model_dir: str | Path, cfg: OrtConfig = OrtConfig(), expected_codebook_version: str | None = None):
        self.manifest, self.providers, self.prefill_sess, self.step_sess = _open_sessions(
            model_dir, SHARED_STEP, cfg, expected_codebook_version)
        self.vocab_size = int(self.manifest["model_config"]["vocab_size"])

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> tuple[np.ndarray, SharedState]:
        logits, k, v, mask, pos = _run_prefill(self.prefill_sess, input_ids, attention_mask, position_ids)
        n_layer, b, h, _, hd = k.shape
        empty = np.zeros((n_layer, b, h, 0, hd), dtype=k.dtype)
        return logits, SharedState(k, v, mask, empty, empty, pos[:, -1] + 1)

    def step(self, tokens: np.ndarray, state: SharedState, head_ids: np.ndarray | None = None) -> tuple[np.ndarray, SharedState]:
        n = state.next_position.shape[0]
        if head_ids is None:
            head_ids = np.arange(self.vocab_size, dtype=np.int64)
        logits, sk, sv = self.step_sess.run(
            ["logits", "suffix_k_out", "suffix_v_out"],
            {
                "input_ids": np.ascontiguousarray(tokens, dtype=np.int64).reshape(n, 1),
                "position_ids": state.next_position.reshape(n, 1),
                "prefix_mask": state.prefix_mask,
                "prefix_k": state.prefix_k,
                "prefix_v": state.prefix_v,
                "suffix_k": state.suffix_k,
                "suffix_v": state.suffix_v,
                "head_ids": np.ascontiguousarray(head_ids, dtype=np.int64),
            },
        )
        return logits, SharedState(state.prefix_k, state.prefix_v, state.prefix_mask, sk, sv, state.next_position + 1)

    def reorder(self, state: SharedState, rows: np.ndarray) -> SharedState:
        rows = np.asarray(rows, dtype=np.int64)
        n_users, n_old = state.prefix_mask.shape[0], state.next_position.shape[0]
        if len(rows) % n_users:
            raise ValueError(f"{len(rows)} rows cannot be grouped into {n_users} users")
        user = rows // (n_old // n_users)
        if not (user == np.repeat(np.arange(n_users), len(rows) // n_users)).all():
            raise ValueError("shared-prefix state: each user's new rows must come from that user's rows, in user order")
        return SharedState(state.prefix_k, state.prefix_v, state.prefix_mask, np.take(state.suffix_k, rows, axis=1),
                           np.take(state.suffix_v, rows, axis=1), state.next_position[rows])


def load_step_model(model_dir: str | Path, cfg: OrtConfig = OrtConfig(), expected_codebook_version: str | None = None):
    """OrtSharedPrefixStepModel when step_shared.onnx was exported, else OrtStepModel."""
    if (Path(model_dir) / SHARED_STEP).exists():
        return OrtSharedPrefixStepModel(model_dir, cfg, expected_codebook_version)
    return OrtStepModel(model_dir, cfg, expected_codebook_version)
