"""PyTorch vs exported-graph agreement: the largest logit difference over a prefill and a few
KV-cached decode steps on random histories (used by the export job as a release gate)."""
from __future__ import annotations

import numpy as np

from genrec_model.decode.beam_search import left_pad


def max_logit_diff(reference, candidate, vocab_size: int, n_users: int = 8, max_len: int = 30, n_steps: int = 3,
                   seed: int = 0) -> float:
    """reference / candidate: StepModels (e.g. TorchStepModel vs an onnxruntime one)."""
    rng = np.random.default_rng(seed)
    histories = [rng.integers(3, vocab_size, size=int(rng.integers(1, max_len))) for _ in range(n_users)]
    ids, mask, pos = left_pad(histories)
    worst = 0.0
    logits_a, state_a = reference.prefill(ids, mask, pos)
    logits_b, state_b = candidate.prefill(ids, mask, pos)
    for _ in range(n_steps):
        worst = max(worst, float(np.abs(np.asarray(logits_a) - np.asarray(logits_b)).max()))
        tokens = rng.integers(3, vocab_size, size=n_users)
        logits_a, state_a = reference.step(tokens, state_a)
        logits_b, state_b = candidate.step(tokens, state_b)
    return max(worst, float(np.abs(np.asarray(logits_a) - np.asarray(logits_b)).max()))
