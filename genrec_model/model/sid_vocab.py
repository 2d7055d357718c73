"""Token vocabulary for Semantic-ID sequences.

Layout (ids): [PAD, BOS, EOS, task tokens...] [level 0 codes] [level 1 codes] ... [extra tokens]
A SID token id is `n_special + offset[level] + code` (docs/CONTRACTS.md). Extra tokens (e.g. title
words for the text->SID alignment task) come after the last SID level so SID ids never move.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAD, BOS, EOS = 0, 1, 2
DEFAULT_TASK_TOKENS = ("SEP", "T2S", "S2T")


@dataclass(frozen=True)
class SidVocab:
    level_sizes: tuple[int, ...]
    task_tokens: tuple[str, ...] = DEFAULT_TASK_TOKENS
    n_extra: int = 0  # tokens after the SID range (title words, categories, ...)
    offsets: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.level_sizes)
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"level_sizes must be positive, got {self.level_sizes}")
        object.__setattr__(self, "level_sizes", sizes)
        object.__setattr__(self, "task_tokens", tuple(self.task_tokens))
        object.__setattr__(self, "offsets", tuple(int(x) for x in np.cumsum((0,) + sizes[:-1])))

    @property
    def n_special(self) -> int:
        return 3 + len(self.task_tokens)

    @property
    def n_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def sid_start(self) -> int:
        return self.n_special

    @property
    def sid_end(self) -> int:
        """One past the last SID token id."""
        return self.n_special + sum(self.level_sizes)

    @property
    def extra_start(self) -> int:
        return self.sid_end

    @property
    def vocab_size(self) -> int:
        return self.sid_end + self.n_extra

    def task_id(self, name: str) -> int:
        return 3 + self.task_tokens.index(name)

    def level_range(self, level: int) -> tuple[int, int]:
        """[start, end) token ids of one SID level."""
        start = self.n_special + self.offsets[level]
        return start, start + self.level_sizes[level]

    @property
    def level_starts(self) -> tuple[int, ...]:
        """First token id of each SID level."""
        return tuple(self.level_range(lv)[0] for lv in range(self.n_levels))

    def softmax_groups(self) -> tuple[int, ...]:
        """Token-id boundaries [0, n_special, level 1 start, ..., sid_end, vocab_size]: specials, each
        SID level and the extra tokens form separate softmax groups in training."""
        bounds = [0] + [self.level_range(lv)[0] for lv in range(self.n_levels)] + [self.sid_end]
        if self.n_extra:
            bounds.append(self.vocab_size)
        return tuple(bounds)

    def codes_to_tokens(self, codes: np.ndarray) -> np.ndarray:
        """(..., L) codes -> (..., L) token ids."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape[-1] != self.n_levels:
            raise ValueError(f"codes last dim {codes.shape[-1]} != n_levels {self.n_levels}")
        if (codes < 0).any() or (codes >= np.asarray(self.level_sizes)).any():
            raise ValueError("code out of range for level_sizes")
        return codes + self.n_special + np.asarray(self.offsets, dtype=np.int64)

    def tokens_to_codes(self, tokens: np.ndarray) -> np.ndarray:
        """(..., L) token ids -> (..., L) codes; raises if a token is not of its level."""
        tokens = np.asarray(tokens, dtype=np.int64)
        codes = tokens - self.n_special - np.asarray(self.offsets, dtype=np.int64)
        if (codes < 0).any() or (codes >= np.asarray(self.level_sizes)).any():
            raise ValueError("token is not a SID token of its level")
        return codes

    def extra_token(self, index: np.ndarray | int) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        if (index < 0).any() or (index >= self.n_extra).any():
            raise ValueError("extra token index out of range")
        return index + self.extra_start

    def to_dict(self) -> dict:
        return {
            "level_sizes": list(self.level_sizes),
            "task_tokens": list(self.task_tokens),
            "n_extra": self.n_extra,
            "n_special": self.n_special,
            "vocab_size": self.vocab_size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SidVocab":
        vocab = cls(tuple(d["level_sizes"]), tuple(d.get("task_tokens", DEFAULT_TASK_TOKENS)), int(d.get("n_extra", 0)))
        if "n_special" in d and d["n_special"] != vocab.n_special:
            raise ValueError(f"n_special mismatch: dict says {d['n_special']}, layout gives {vocab.n_special}")
        return vocab


def history_tokens(history: np.ndarray, item_tokens: np.ndarray) -> np.ndarray:
    """`BOS sid(i1) .. sid(in)`: the model input for a history of item indices (oldest first)."""
    return np.concatenate([[BOS], item_tokens[np.asarray(history, dtype=np.int64)].reshape(-1)]).astype(np.int64)
