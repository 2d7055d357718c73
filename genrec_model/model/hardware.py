"""What the training hardware runs natively: the device, and whether bfloat16 autocast is worth it.

bf16 autocast is only a speed-up where the hardware has bf16 arithmetic (CUDA GPUs with bf16 support,
CPUs with AVX512-BF16 or AMX). Elsewhere torch emulates it, ~8x slower per step on an AVX2 CPU, so a
config's `bf16: true` means "use bf16 where it is native" and the choice is logged.
"""
from __future__ import annotations

import logging
import platform

import torch

log = logging.getLogger(__name__)
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_flags() -> set[str]:
    if platform.system() != "Linux":
        return set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe_cpu() -> dict[str, str]:
    """What a training run's floating-point results depend on beyond the code and data: the CPU model and
    the instruction set torch dispatches its kernels to (AVX2 and AVX-512 kernels round differently, so the
    same seeded run can give other digits on another machine). Recorded in the train manifest and logs."""
    model = ""
    if platform.system() == "Linux":
        try:
            with open("/proc/cpuinfo") as f:
                model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
        except OSError:
            pass
    return {"cpu_model": model or platform.processor() or platform.machine(),
            "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()), "torch_version": torch.__version__}


def native_bf16(device: torch.device, flags: set[str] | None = None) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return any(f in (cpu_flags() if flags is None else flags) for f in _CPU_BF16_FLAGS)
    return False


def use_bf16(requested: bool, device: torch.device, what: str) -> bool:
    """bf16 autocast for `what` (a log label): only when requested AND native on `device`."""
    native = native_bf16(device)
    chosen = requested and native
    if requested and not native:
        log.warning("%s: bf16 requested but %s has no native bf16 arithmetic; training in fp32", what, device)
    cpu = describe_cpu()
    log.info("%s: precision=%s device=%s cpu=%r torch_cpu_capability=%s", what, "bf16" if chosen else "fp32", device,
             cpu["cpu_model"], cpu["torch_cpu_capability"])
    return chosen
