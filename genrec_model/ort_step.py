"""StepModel (docs/CONTRACTS.md) over the exported prefill.onnx / step.onnx with onnxruntime.

The KV cache lives in numpy arrays between calls; `reorder` gathers beam rows (also B users ->
B * beam). CUDA is used only when onnxruntime offers it AND a CUDA device is actually visible, so a
CPU-only worker with onnxruntime-gpu installed never tries (and never logs) a CUDA session.
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrtConfig:
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    use_gpu: bool | None = None  # None: auto (GPU only if really present), False: CPU, True: require GPU
    gpu_device_id: int = 0


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


class OrtStepModel:
    def __init__(self, model_dir: str | Path, cfg: OrtConfig = OrtConfig(), expected_codebook_version: str | None = None):
        import onnxruntime as ort

        from genrec_model.export import load_manifest

        model_dir = Path(model_dir)
        self.manifest = load_manifest(str(model_dir), expected_codebook_version)
        self.vocab_size = int(self.manifest["model_config"]["vocab_size"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cfg.intra_op_threads
        opts.inter_op_num_threads = cfg.inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.providers = choose_providers(cfg)
        self.prefill_sess = ort.InferenceSession(str(model_dir / "prefill.onnx"), opts, providers=self.providers)
        self.step_sess = ort.InferenceSession(str(model_dir / "step.onnx"), opts, providers=self.providers)
        log.info("onnxruntime providers: %s", self.prefill_sess.get_providers())

    @property
    def on_gpu(self) -> bool:
        return "CUDAExecutionProvider" in self.prefill_sess.get_providers()

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray) -> tuple[np.ndarray, OrtState]:
        mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        pos = np.ascontiguousarray(position_ids, dtype=np.int64)
        logits, k, v = self.prefill_sess.run(
            ["logits", "present_k", "present_v"],
            {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64), "attention_mask": mask, "position_ids": pos},
        )
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
