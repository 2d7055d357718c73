"""Config of decoding: beam search and the onnxruntime step models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BeamSearchConfig:
    beam_width: int = 20
    top_k: int = 10
    # "level": log-softmax over the level's code range; "vocab": over the whole vocabulary
    # (what transformers' generate does before prefix_allowed_tokens_fn masks); "children": over the
    # beam's trie children only (a model trained with item_softmax="prefix"; decode/fused_head.py).
    normalize: Literal["level", "vocab", "children"] = "level"
    # users per prefill/step call in `decode`; small batches keep the (users*beam) KV cache copies in cache
    # (8-16 measured fastest on CPU, benchmarks/decode_bench.py)
    users_per_call: int = 8
    # False: unconstrained decoding (ablation); decoded tuples that are not catalog SIDs map to no item
    constrained: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= self.beam_width:
            raise ValueError(f"need 1 <= top_k <= beam_width, got {self.top_k}, {self.beam_width}")
        if self.normalize not in ("level", "vocab", "children"):
            raise ValueError(f"normalize must be 'level' or 'vocab', got {self.normalize!r}")


def trained_normalization(item_softmax: str) -> str:
    """The beam search normalization matching how a model's item level was trained (SeqModelConfig.item_softmax)."""
    return "children" if item_softmax == "prefix" else "level"


@dataclass(frozen=True)
class OrtConfig:
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    use_gpu: bool | None = None  # None: auto (GPU only if really present), False: CPU, True: require GPU
    gpu_device_id: int = 0
