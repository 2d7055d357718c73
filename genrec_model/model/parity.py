"""PyTorch vs exported-graph agreement, the export job's release gate: the largest logit difference
over a prefill and several KV-cached decode steps with beam search's cache traffic (users expanded to
beams, beams reordered within each user between steps) on random histories."""
from __future__ import annotations

import numpy as np

from genrec_model.decode.beam_search import left_pad
from genrec_model.model.sid_vocab import SidVocab


def parity_max_abs_diff(reference, candidate, vocab: SidVocab, n_users: int = 8, beams: int = 4, max_len: int = 30,
                        n_steps: int = 3, seed: int = 0) -> float:
    """reference / candidate: StepModels (e.g. TorchStepModel vs an onnxruntime one)."""
    rng = np.random.default_rng(seed)
    lo, hi = vocab.sid_start, vocab.sid_end
    histories = [rng.integers(lo, hi, size=int(rng.integers(1, max_len))) for _ in range(n_users)]
    ids, mask, pos = left_pad(histories)
    logits_a, state_a = reference.prefill(ids, mask, pos)
    logits_b, state_b = candidate.prefill(ids, mask, pos)
    worst = float(np.abs(np.asarray(logits_a) - np.asarray(logits_b)).max())
    rows = np.repeat(np.arange(n_users), beams)  # B users -> B * beams rows, grouped by user
    state_a, state_b = reference.reorder(state_a, rows), candidate.reorder(state_b, rows)
    for _ in range(n_steps):
        tokens = rng.integers(lo, hi, size=n_users * beams)
        logits_a, state_a = reference.step(tokens, state_a)
        logits_b, state_b = candidate.step(tokens, state_b)
        worst = max(worst, float(np.abs(np.asarray(logits_a) - np.asarray(logits_b)).max()))
        # beams survive and multiply within a user, as in beam search: parent rows drawn per user
        rows = (np.repeat(np.arange(n_users), beams) * beams + rng.integers(0, beams, n_users * beams))
        state_a, state_b = reference.reorder(state_a, rows), candidate.reorder(state_b, rows)
    return worst
