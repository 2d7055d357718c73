"""Config of the `evaluate` stage."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvaluateConfig:
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    splits: list[str] = field(default_factory=lambda: ["test", "valid"])
    diversity_k: int = 10
