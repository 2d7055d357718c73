"""StepModels (docs/CONTRACTS.md) over the exported ONNX graphs with onnxruntime.

- `OrtStepModel`: prefill.onnx + step.onnx (the contract graphs). The KV cache lives in numpy arrays
  between calls; `reorder` gathers beam rows (also B users -> B * beam), i.e. every beam carries and
  copies its own copy of the history KV.
- `OrtSharedPrefixStepModel`: prefill.onnx + step_shared.onnx (`export_shared_step`), which keeps the
  history KV once per user and only the decoded tokens' KV per beam, and returns final hidden states; the
  output head (head.npz) is applied outside the graph, to each beam's trie children only
  (decode/fused_head.py) or, for the StepModel protocol, to the requested token ids.
  `load_step_model` picks it when the graph is there. The graphs are written by
  `genrec_model.model.export`; this module needs onnxruntime and numpy only.

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
from genrec_model.model.artifacts import SHARED_STEP, STEP, load_head, read_export

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


def _open_sessions(model_dir: str | Path, step_file: str, cfg: OrtConfig, expected_codebook_version: str | None,
                   manifest: dict | None):
    """(manifest, providers, prefill session, step session) for an exported model folder. `manifest`:
    the export's manifest when the caller holds it (the export job, before it publishes the manifest)."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    if manifest is None:
        manifest = read_export(str(model_dir), expected_codebook_version)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.intra_op_threads
    opts.inter_op_num_threads = cfg.inter_op_threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = choose_providers(cfg)
    prefill = ort.InferenceSession(str(model_dir / "prefill.onnx"), opts, providers=providers)
    step = ort.InferenceSession(str(model_dir / step_file), opts, providers=providers)
    log.info("onnxruntime providers: %s", prefill.get_providers())
    return manifest, providers, prefill, step


def _run_prefill(sess, input_ids, attention_mask, position_ids, item_keys: bool = False):
    """prefill.onnx on int64 inputs -> (hidden (B, D), present_k, present_v, mask, position_ids, item_kv): item_kv
    = (item_k, item_v, mask) of an item_query="attend" model when `item_keys`, else None."""
    ids, mask, pos = (np.ascontiguousarray(a, dtype=np.int64) for a in (input_ids, attention_mask, position_ids))
    names = ["hidden", "present_k", "present_v"] + (["item_k", "item_v"] if item_keys else [])
    out = sess.run(names, {"input_ids": ids, "attention_mask": mask, "position_ids": pos})
    return out[0], out[1], out[2], mask, pos, ((out[3], out[4], mask) if item_keys else None)


class _Head:
    """The exported output head (head.npz): logits = hidden @ W.T + b, for all or some token ids."""

    def __init__(self, model_dir, vocab_size: int):
        self.model_dir = Path(model_dir)
        self.head_weight, self.head_bias, self.item_query_tables = load_head(model_dir)
        if self.head_weight.shape[0] != vocab_size:
            raise ValueError(f"head.npz has {self.head_weight.shape[0]} rows for a vocabulary of {vocab_size}")

    def _logits(self, hidden: np.ndarray, head_ids: np.ndarray | None = None) -> np.ndarray:
        if head_ids is None:
            return hidden @ self.head_weight.T + self.head_bias
        head_ids = np.asarray(head_ids, dtype=np.int64)
        return hidden @ self.head_weight[head_ids].T + self.head_bias[head_ids]


class OrtStepModel(_Head):
    def __init__(self, model_dir: str | Path, cfg: OrtConfig = OrtConfig(), expected_codebook_version: str | None = None,
                 manifest: dict | None = None):
        self.manifest, self.providers, self.prefill_sess, self.step_sess = _open_sessions(
            model_dir, STEP, cfg, expected_codebook_version, manifest)
        self.vocab_size = int(self.manifest["model_config"]["vocab_size"])
        self.n_head = int(self.manifest["model_config"]["n_head"])
        self.layer_norm_eps = float(self.manifest["model_config"].get("layer_norm_eps", 1e-5))
        super().__init__(model_dir, self.vocab_size)

    @property
    def on_gpu(self) -> bool:
        return "CUDAExecutionProvider" in self.prefill_sess.get_providers()

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> tuple[np.ndarray, OrtState]:
        hidden, k, v, mask, pos, _ = _run_prefill(self.prefill_sess, input_ids, attention_mask, position_ids)
        return self._logits(hidden), OrtState(k, v, mask, pos[:, -1] + 1)

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

@dataclass(frozen=True)
class SharedState:
    prefix_k: np.ndarray  # (n_layer, B, H, T, hd) history KV, once per user
    prefix_v: np.ndarray
    prefix_mask: np.ndarray  # (B, T) int64
    suffix_k: np.ndarray  # (n_layer, N, H, S, hd) KV of decoded tokens, N = B * W rows
    suffix_v: np.ndarray
    next_position: np.ndarray  # (N,) int64
    item_kv: tuple | None = None  # item_query="attend", after prefill: (item_k, item_v (B, T, D), mask (B, T))


class OrtSharedPrefixStepModel(_Head):
    """StepModel over prefill.onnx + step_shared.onnx + head.npz. Rows must stay grouped by user (B users x
    W beams, row = user * W + beam); `reorder` checks it, which beam search always satisfies.
    `prefill_hidden` / `step_hidden` return final hidden states for the fused children-only head
    (`head_weight` (V, D), `head_bias` (V,)); `prefill` / `step` return logits (all, or `head_ids` only)."""

    accepts_head_ids = True

    def __init__(self, model_dir: str | Path, cfg: OrtConfig = OrtConfig(), expected_codebook_version: str | None = None,
                 manifest: dict | None = None):
        self.manifest, self.providers, self.prefill_sess, self.step_sess = _open_sessions(
            model_dir, SHARED_STEP, cfg, expected_codebook_version, manifest)
        self.vocab_size = int(self.manifest["model_config"]["vocab_size"])
        self.n_head = int(self.manifest["model_config"]["n_head"])
        self.layer_norm_eps = float(self.manifest["model_config"].get("layer_norm_eps", 1e-5))
        super().__init__(model_dir, self.vocab_size)

    def prefill_hidden(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> tuple[np.ndarray, SharedState]:
        hidden, k, v, mask, pos, item_kv = _run_prefill(self.prefill_sess, input_ids, attention_mask, position_ids,
                                                        self.item_query_tables is not None and "query_q" in self.item_query_tables)
        n_layer, b, h, _, hd = k.shape
        empty = np.zeros((n_layer, b, h, 0, hd), dtype=k.dtype)
        return hidden, SharedState(k, v, mask, empty, empty, pos[:, -1] + 1, item_kv)

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> tuple[np.ndarray, SharedState]:
        hidden, state = self.prefill_hidden(input_ids, attention_mask, position_ids)
        return self._logits(hidden, None), state

    def step_hidden(self, tokens: np.ndarray, state: SharedState) -> tuple[np.ndarray, SharedState]:
        n = state.next_position.shape[0]
        hidden, sk, sv = self.step_sess.run(
            ["hidden", "suffix_k_out", "suffix_v_out"],
            {
                "input_ids": np.ascontiguousarray(tokens, dtype=np.int64).reshape(n, 1),
                "position_ids": state.next_position.reshape(n, 1),
                "prefix_mask": state.prefix_mask,
                "prefix_k": state.prefix_k,
                "prefix_v": state.prefix_v,
                "suffix_k": state.suffix_k,
                "suffix_v": state.suffix_v,
            },
        )
        return hidden, SharedState(state.prefix_k, state.prefix_v, state.prefix_mask, sk, sv, state.next_position + 1)

    def step(self, tokens: np.ndarray, state: SharedState, head_ids: np.ndarray | None = None) -> tuple[np.ndarray, SharedState]:
        hidden, state = self.step_hidden(tokens, state)
        return self._logits(hidden, head_ids), state

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


def load_step_model(model_dir: str | Path, cfg: OrtConfig = OrtConfig(), expected_codebook_version: str | None = None,
                    manifest: dict | None = None):
    """OrtSharedPrefixStepModel when step_shared.onnx was exported, else OrtStepModel."""
    if (Path(model_dir) / SHARED_STEP).exists():
        return OrtSharedPrefixStepModel(model_dir, cfg, expected_codebook_version, manifest)
    return OrtStepModel(model_dir, cfg, expected_codebook_version, manifest)
