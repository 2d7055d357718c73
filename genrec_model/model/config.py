"""Config of the generative model: transformer size, training windows, trainer, fit, export.

Plain dataclasses (no torch), composed into `genrec_model.config.GenrecConfig` under `train` and `export`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SeqModelConfig:
    """Transformer size. In a genrec config (`train.model`) `vocab_size` and `max_positions` are not set:
    `fit_generator` derives them from the SID vocabulary and `train.data`."""
    vocab_size: int = 0
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_ff: int = 512
    dropout: float = 0.1
    max_positions: int = 128
    tie_weights: bool = True
    layer_norm_eps: float = 1e-5
    # > 0: the item level's token embeddings (input and output, tied) are computed from each item's
    # content vector of this width (its text embedding) by a small encoder, not looked up per item, so an
    # item never seen in training is scored like any other and parameters do not grow with the catalog.
    # fit_generator sets it (train.item_representation=content) and `item_tokens`, the [start, end) ids.
    item_content_dim: int = 0
    item_tokens: tuple[int, int] = (0, 0)
    # Content item encoder: the sum of `item_codebooks` code embeddings, one per product-quantization
    # subspace of the text embedding (catalog/product_quantizer.py; 0 = none), plus, with item_text_mlp,
    # an MLP of the text embedding itself. Parameters: item_codebooks * item_codebook_size * d_model.
    item_codebooks: int = 0
    item_codebook_size: int = 256
    item_text_mlp: bool = True
    logit_bias: bool = False  # a constant (V,) output bias (a content model materialized for export)
    # How the item level (the SIDs' last level, one token per item) is normalized: "level" = softmax over
    # every item token; "prefix" = only over the items sharing the target's semantic prefix, i.e.
    # P(item) = P(prefix) * P(item | prefix). Decoding then scores a beam's children only (decode/fused_head.py)
    # instead of the whole item level: the head per step is ~catalog / prefixes times smaller.
    item_softmax: Literal["level", "prefix"] = "level"
    # Which state scores the item level: "step" = the hidden state after the prefix token ran through the
    # transformer (one decoder step per beam); "user" = the user state that predicted the prefix plus a
    # learned linear shift of the prefix token's embedding, so decoding runs no transformer step per beam:
    # the prefill's hidden state scores every beam's children (decode/beam_search.py). Needs
    # item_softmax="prefix" (the item is normalized within its prefix, which the shift conditions on).
    # "attend" = "user" plus one attention read of the history's final states with a query made from the
    # prefix token (what in the history relates to this prefix): per beam ~T x D multiply-adds instead of
    # a transformer step over every layer.
    item_query: Literal["step", "user", "attend"] = "step"
    # > 0 ("user"/"attend"): the item-level state z also passes z + MLP(LayerNorm(z)) with this hidden width
    # (per beam 2 x D x width multiply-adds): the nonlinearity a decoder step would have given.
    item_query_mlp: int = 0
    # ("attend") the read's query also sees the state that predicted the prefix (+ a linear map of it; one
    # vector per user at decode time), not only the prefix token.
    item_read_user: bool = False

    def __post_init__(self) -> None:
        if self.item_softmax not in ("level", "prefix"):
            raise ValueError(f"item_softmax must be 'level' or 'prefix', got {self.item_softmax!r}")
        if self.item_query not in ("step", "user", "attend"):
            raise ValueError(f"item_query must be 'step', 'user' or 'attend', got {self.item_query!r}")
        if self.item_read_user and self.item_query != "attend":
            raise ValueError("item_read_user needs item_query 'attend'")
        if self.item_query_mlp and self.item_query == "step":
            raise ValueError("item_query_mlp needs item_query 'user' or 'attend'")
        if self.item_query != "step" and self.item_softmax != "prefix":
            raise ValueError(f"item_query={self.item_query!r} needs item_softmax='prefix' (the item is scored "
                             "within its prefix)")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SeqDataConfig:
    max_history: int = 20  # items of history fed to the model
    level_weights: tuple[float, ...] | None = None  # loss weight per SID level (None = all 1)
    t2s_ratio: float = 0.0  # T2S sequences per epoch, as a fraction of rec windows (0 = off)
    s2t_ratio: float = 0.0
    n_words: int = 2000  # title word vocabulary size
    max_words: int = 8  # words per item text


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 200
    decay: str = "cosine"  # "cosine" | "linear" | "none"
    min_lr_ratio: float = 0.05
    batch_size: int = 256
    epochs: int = 30
    # Wall-clock safety cap only: published configs budget in epochs (+ patience), so results do not
    # depend on how busy the machine is.
    max_minutes: float = float("inf")
    patience: int = 4  # epochs without improvement of `monitor` before stopping
    monitor: str = "recall@10"
    monitor_mode: str = "max"  # "max" | "min"
    label_smoothing: float = 0.0
    group_softmax: bool = True  # softmax per SID level (see sequence_loss); needs `softmax_groups` in train()
    bf16: bool = False  # bfloat16 autocast where the hardware has it natively (model/hardware.py), else fp32
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1
    bucket_batches: int = 50  # sort this many batches' worth of sequences by length (less padding)
    progress: bool = True
    device: str = "auto"  # "auto" = cuda when available, else cpu


@dataclass(frozen=True)
class DistributedConfig:
    """Training processes (`jobs/train.py`). 1: the model trains in the driver process. > 1: pyspark's
    TorchDistributor runs that many data-parallel ranks (torchrun, DistributedDataParallel), each reading
    only its own shard of the histories; the global batch (trainer.batch_size) is split evenly over them."""
    num_processes: int = 1
    local_mode: bool = True  # ranks as processes on the driver's machine; False = Spark barrier tasks on executors
    use_gpu: bool = False  # one GPU per rank (nccl); otherwise gloo on CPU

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise ValueError(f"train.distributed.num_processes must be >= 1, got {self.num_processes}")


@dataclass(frozen=True)
class FitConfig:
    model: SeqModelConfig = field(default_factory=SeqModelConfig)
    data: SeqDataConfig = field(default_factory=SeqDataConfig)
    trainer: TrainConfig = field(default_factory=TrainConfig)
    # free: one learned embedding per item token (an item never seen in training is never generated);
    # content: item tokens embedded from the item's text embedding (SeqModelConfig.item_content_dim)
    item_representation: Literal["free", "content"] = "free"
    # After model selection, refit on every event (no held-out items) for the chosen number of epochs:
    # that model serves the `serve` split; test/valid lists keep coming from the selected model.
    refit_for_serving: bool = False
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    valid_users: int = 1000           # validation users sampled for Recall@10 each epoch
    valid_beam: int = 20
    valid_seed: int = 123

    def __post_init__(self) -> None:
        if self.trainer.batch_size % self.distributed.num_processes:
            raise ValueError(f"train.trainer.batch_size={self.trainer.batch_size} must be a multiple of "
                             f"train.distributed.num_processes={self.distributed.num_processes}")


@dataclass(frozen=True)
class ExportConfig:
    model_version: str = ""           # empty = the latest trained model
    opset: int = 18
    prefer_dynamo: bool = True        # torch.onnx dynamo exporter; TorchScript exporter as fallback
    shared_prefix_step: bool = True   # also export step_shared.onnx (history KV kept once per user)
    parity_tolerance: float = 1e-4    # max |logit(torch) - logit(onnxruntime)| allowed
    # int8 weights (onnxruntime dynamic quantization of every MatMul/Gemm of the graphs): measured on the
    # Beauty model (benchmarks/decode_bench.py --int8) 1.1x faster decoding and top-10 lists identical for
    # only ~26% of users, so off; its own parity tolerance, since int8 logits move by design
    int8: bool = False
    int8_parity_tolerance: float = 0.5
