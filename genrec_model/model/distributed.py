"""Data-parallel training across processes (torch.distributed: gloo on CPU, nccl on CUDA).

Spark-free: `jobs/train.py` launches `rank_fit` through pyspark's TorchDistributor (torchrun underneath),
but any launcher that sets the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) works.
Each rank reads its own share of the history shards (data/history_shards.py), trains a replica whose
gradients are averaged every step (DistributedDataParallel), validates its share of the validation users
(metric sums all-reduced, so every rank takes the same early-stopping decisions) and rank 0 alone writes
files. One process (`SINGLE`) is the same code path with no collectives.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job; collectives are no-ops for a single process."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"  # where collective tensors live (cuda under nccl)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def min_int(self, value: int) -> int:
        if not self.distributed:
            return int(value)
        t = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([int(flag)], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


SINGLE = Ranks()


def init_from_env(use_gpu: bool = False, timeout_minutes: float = 60.0) -> Ranks:
    """Join the process group described by the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, ...)."""
    import datetime as dt

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE
    device = "cpu"
    backend = "gloo"
    if use_gpu and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local % torch.cuda.device_count())
        device, backend = f"cuda:{torch.cuda.current_device()}", "nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=dt.timedelta(minutes=timeout_minutes))
    return Ranks(rank, world, device)


def rank_fit(shard_dir: str, codes, level_sizes: list[int], titles: list[str], cfg, out_dir: str,
             item_content=None, use_gpu: bool = False) -> str:
    """One rank of a distributed `fit_generator`: read this rank's history shard, train with gradient
    averaging, and on rank 0 save the fitted model object to a file in out_dir. Returns that file's path
    (the same on every rank: TorchDistributor keeps one rank's return value)."""
    from dataclasses import replace

    from genrec_model.data.history_shards import read_history_shards
    from genrec_model.model.fit import fit_generator

    ranks = init_from_env(use_gpu)
    path = os.path.join(out_dir, "_fitted_rank0.pt")
    try:
        if ranks.device != "cpu":  # this rank's own GPU (init_from_env picked it)
            cfg = replace(cfg, trainer=replace(cfg.trainer, device=ranks.device))
        _, sequences = read_history_shards(shard_dir, ranks.rank, ranks.world)
        fitted = fit_generator(sequences, codes, level_sizes, titles, cfg, out_dir, item_content, ranks=ranks)
        if ranks.is_main:
            fitted.model.cpu()
            if fitted.serving_model is not None:
                fitted.serving_model.cpu()
            torch.save(fitted, path)
        if ranks.distributed:
            dist.barrier()
    finally:
        if ranks.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return path


def load_fitted(path: str):
    """The Fitted object `rank_fit` saved on rank 0 (the file is removed once read)."""
    fitted = torch.load(path, weights_only=False)
    os.remove(path)
    return fitted
