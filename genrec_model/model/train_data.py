"""Training token sequences from user histories and item SIDs (+ text alignment tasks).

Recommendation task (leave-one-out as genrec_model/data/splits.py): a user's training prefix (sequence
minus validation and test items) is cut into windows of at most `max_history + 1` items, each laid out
`BOS sid(i1) sid(i2) ...`. A decoder-only model trains every next-item position of a window at once;
loss is on SID tokens of items 2.. of the window (item 1 has no history).

Alignment tasks (SIGMA-style, plain token sequences so the model stays GPT-2):
- T2S: `T2S w1 .. wk SEP sid(i)` — title words -> SID, loss on the SID tokens.
- S2T: `S2T sid(i) SEP w1 .. wk` — SID -> title words, loss on the words.
Title words are extra vocabulary tokens (`SidVocab.n_extra`), the `n_words` most frequent.
"""
from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from genrec_model.data.splits import Example, split_sequence
from genrec_model.model.config import SeqDataConfig
from genrec_model.model.sid_vocab import PAD, SidVocab, history_tokens

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and the of for with to in on by or from at as is it this that oz fl ml pack".split())


@dataclass
class TokenSequences:
    """Variable-length token sequences with a per-token loss weight (weight[t] scores token t)."""

    tokens: list[np.ndarray]
    weights: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, other: "TokenSequences") -> "TokenSequences":
        return TokenSequences(self.tokens + other.tokens, self.weights + other.weights)


def tokenize_title(title: str) -> list[str]:
    words = _WORD.findall(html.unescape(title or "").lower())
    return [w for w in words if w not in _STOP and len(w) > 1]


def build_word_vocab(titles: list[str], n_words: int) -> list[str]:
    """The `n_words` most frequent title words (document frequency, ties alphabetical)."""
    df = Counter(w for t in titles for w in set(tokenize_title(t)))
    return [w for w, _ in sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))[:n_words]]


def item_word_ids(titles: list[str], words: list[str], max_words: int) -> list[np.ndarray]:
    """Per item: indices into `words` of its first distinct in-vocabulary title words."""
    index = {w: i for i, w in enumerate(words)}
    out = []
    for t in titles:
        seen: list[int] = []
        for w in tokenize_title(t):
            j = index.get(w)
            if j is not None and j not in seen:
                seen.append(j)
            if len(seen) == max_words:
                break
        out.append(np.asarray(seen, dtype=np.int64))
    return out


def _level_weight_row(n_levels: int, level_weights: tuple[float, ...] | None) -> np.ndarray:
    if level_weights is None:
        return np.ones(n_levels, dtype=np.float32)
    if len(level_weights) != n_levels:
        raise ValueError(f"level_weights has {len(level_weights)} entries for {n_levels} levels")
    return np.asarray(level_weights, dtype=np.float32)


def rec_windows(prefix: np.ndarray, max_history: int) -> list[np.ndarray]:
    """Windows of <= max_history + 1 items covering every item of `prefix` as a target once.

    The last window ends at the prefix end; earlier windows step back by `max_history` so the first
    item of a window (never a target in it) is the last item of the previous one.
    """
    n, size = len(prefix), max_history + 1
    if n < 2:
        return []
    out, end = [], n
    while True:
        start = max(0, end - size)
        out.append(prefix[start:end])
        if start == 0:
            return out[::-1]
        end = start + 1


def rec_sequences(sequences: list[np.ndarray], item_tokens: np.ndarray, cfg: SeqDataConfig,
                  held_out: bool = True) -> TokenSequences:
    """Training windows of the recommendation task from the leave-one-out training prefixes (held_out)
    or from the whole sequences (the serving refit)."""
    L = item_tokens.shape[1]
    lw = _level_weight_row(L, cfg.level_weights)
    toks, ws = [], []
    for seq in sequences:
        prefix = split_sequence(np.asarray(seq), cfg.max_history)[0] if held_out else np.asarray(seq)
        for win in rec_windows(prefix, cfg.max_history):
            t = history_tokens(win, item_tokens)
            w = np.zeros(len(t), dtype=np.float32)
            w[1 + L:] = np.tile(lw, len(win) - 1)
            toks.append(t)
            ws.append(w)
    return TokenSequences(toks, ws)


def eval_examples(sequences: list[np.ndarray], max_history: int, split: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(histories, targets, user_rows) of the 'valid' or 'test' leave-one-out examples."""
    hist, targ, rows = [], [], []
    for u, seq in enumerate(sequences):
        _, valid, test = split_sequence(np.asarray(seq), max_history)
        ex: Example | None = valid if split == "valid" else test
        if ex is not None and len(ex.history) > 0:
            hist.append(ex.history)
            targ.append(ex.target)
            rows.append(u)
    return hist, np.asarray(targ, dtype=np.int64), np.asarray(rows, dtype=np.int64)


def alignment_sequences(
    items: np.ndarray, item_tokens: np.ndarray, item_words: list[np.ndarray], vocab: SidVocab, task: str
) -> TokenSequences:
    """T2S or S2T sequences for the given items (items without title words are skipped)."""
    sep, head = vocab.task_id("SEP"), vocab.task_id(task)
    toks, ws = [], []
    for i in items:
        words = item_words[i]
        if len(words) == 0:
            continue
        wt, sid = vocab.extra_token(words), item_tokens[i]
        if task == "T2S":
            t = np.concatenate([[head], wt, [sep], sid])
            w = np.zeros(len(t), dtype=np.float32)
            w[-len(sid):] = 1.0
        elif task == "S2T":
            t = np.concatenate([[head], sid, [sep], wt])
            w = np.zeros(len(t), dtype=np.float32)
            w[-len(wt):] = 1.0
        else:
            raise ValueError(f"unknown alignment task {task!r}")
        toks.append(t.astype(np.int64))
        ws.append(w)
    return TokenSequences(toks, ws)


def epoch_sequences(
    rec: TokenSequences,
    item_tokens: np.ndarray,
    item_words: list[np.ndarray] | None,
    vocab: SidVocab,
    cfg: SeqDataConfig,
    rng: np.random.Generator,
) -> TokenSequences:
    """One epoch: all rec windows plus freshly sampled alignment sequences at the configured ratios."""
    out = rec
    for task, ratio in (("T2S", cfg.t2s_ratio), ("S2T", cfg.s2t_ratio)):
        if ratio > 0 and item_words is not None:
            items = rng.integers(0, len(item_tokens), size=int(round(ratio * len(rec))))
            out = out.extend(alignment_sequences(items, item_tokens, item_words, vocab, task))
    return out


def collate(tokens: list[np.ndarray], weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded (inputs (B, T), labels (B, T), label weights (B, T)); labels are shifted by one."""
    T = max(len(t) for t in tokens) - 1
    x = np.full((len(tokens), T), PAD, dtype=np.int64)
    y = np.full((len(tokens), T), PAD, dtype=np.int64)
    w = np.zeros((len(tokens), T), dtype=np.float32)
    for r, (t, wt) in enumerate(zip(tokens, weights)):
        n = len(t) - 1
        x[r, :n], y[r, :n], w[r, :n] = t[:-1], t[1:], wt[1:]
    return x, y, w
