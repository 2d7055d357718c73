import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrec_model.decode.beam_search import beam_search_fast, beam_search_reference, decode, left_pad
from genrec_model.decode.config import BeamSearchConfig
from genrec_model.decode.constraints import NoConstraint, TrieConstraint
from genrec_model.decode.trie import TrieConfig, build_trie
from genrec_model.model.sid_vocab import SidVocab

N_SPECIAL = 3


class HashStepModel:
    """Fake StepModel: logits are a deterministic function of (real history tokens, decoded tokens)."""

    def __init__(self, vocab_size: int, seed: int = 0, coarse: bool = False, table: dict | None = None):
        self.vocab_size, self.seed, self.coarse, self.table = vocab_size, seed, coarse, table or {}
        self.calls = 0

    def _logits(self, keys: list[tuple]) -> np.ndarray:
        out = np.empty((len(keys), self.vocab_size), dtype=np.float32)
        for i, k in enumerate(keys):
            if k in self.table:
                out[i] = self.table[k]
                continue
            rng = np.random.default_rng([self.seed, zlib.crc32(np.asarray(k, dtype=np.int64).tobytes())])
            out[i] = rng.integers(0, 3, self.vocab_size) if self.coarse else rng.normal(size=self.vocab_size)
        return out

    def prefill(self, input_ids, attention_mask, position_ids):
        self.calls += 1
        keys = [tuple(int(t) for t in row[m == 1]) for row, m in zip(input_ids, attention_mask)]
        return self._logits(keys), keys

    def step(self, tokens, state):
        self.calls += 1
        keys = [k + (int(t),) for k, t in zip(state, tokens)]
        return self._logits(keys), keys

    def reorder(self, state, rows):
        return [state[int(r)] for r in rows]


class SlicedHashStepModel(HashStepModel):
    """Same logits, but `step` returns only the requested token ids' columns."""

    accepts_head_ids = True

    def step(self, tokens, state, head_ids=None):
        logits, state = super().step(tokens, state)
        self.head_calls = getattr(self, "head_calls", 0) + (head_ids is not None)
        return (logits if head_ids is None else logits[:, head_ids]), state


def run_both(model_factory, codes, sizes, histories, cfg, trie_cfg=TrieConfig(), fast_factory=None):
    trie = build_trie(codes, sizes, trie_cfg)
    starts = SidVocab(sizes, task_tokens=()).level_starts
    batch = left_pad(histories)
    ref = beam_search_reference(model_factory(), TrieConstraint(trie), trie, starts, *batch, cfg)
    fast = beam_search_fast((fast_factory or model_factory)(), trie, starts, *batch, cfg)
    return ref, fast


def test_hand_computed_two_levels():
    """Level sizes (2, 2), items (0,0)->0, (0,1)->1, (1,1)->2; one user; beam 2."""
    sizes, vocab = (2, 2), N_SPECIAL + 4  # tokens: level0 3,4; level1 5,6
    hist = (1, 3, 5)
    lg = np.log
    table = {
        hist: np.array([0, 0, 0, lg(0.6), lg(0.4), 9, 9], dtype=np.float32),  # level-0 probs .6 / .4
        hist + (3,): np.array([9, 9, 9, 9, 9, lg(0.3), lg(0.7)], dtype=np.float32),
        hist + (4,): np.array([9, 9, 9, 9, 9, lg(0.5), lg(0.5)], dtype=np.float32),  # (1,0) not an item
    }
    codes = np.array([[0, 0], [0, 1], [1, 1]])
    cfg = BeamSearchConfig(beam_width=2, top_k=2)
    (ri, rs), (fi, fs) = run_both(lambda: HashStepModel(vocab, table=table), codes, sizes, [np.array(hist)], cfg)
    # level 1 log-softmax is over the whole level range, so the invalid (1,0) keeps its mass:
    # (0,1) = .6*.7 = .42, (1,1) = .4*.5 = .2, (0,0) = .6*.3 = .18
    assert ri.tolist() == [[1, 2]]
    np.testing.assert_allclose(np.exp(rs), [[0.42, 0.2]], rtol=1e-6)
    assert fi.tolist() == ri.tolist()
    np.testing.assert_allclose(fs, rs, atol=1e-12)
    # beam 1: level 0 keeps only prefix 0
    (ri, rs), (fi, fs) = run_both(lambda: HashStepModel(vocab, table=table), codes, sizes, [np.array(hist)],
                                  BeamSearchConfig(beam_width=1, top_k=1))
    assert ri.tolist() == fi.tolist() == [[1]]


def test_no_constraint_drops_non_items():
    sizes, vocab = (2, 2), N_SPECIAL + 4
    hist = (1, 3, 5)
    table = {
        hist: np.array([0, 0, 0, np.log(0.4), np.log(0.6), 9, 9], dtype=np.float32),
        hist + (3,): np.array([9, 9, 9, 9, 9, np.log(0.3), np.log(0.7)], dtype=np.float32),
        hist + (4,): np.array([9, 9, 9, 9, 9, np.log(0.9), np.log(0.1)], dtype=np.float32),
    }
    codes = np.array([[0, 0], [0, 1], [1, 1]])
    trie = build_trie(codes, sizes)
    starts = SidVocab(sizes, task_tokens=()).level_starts
    cfg = BeamSearchConfig(beam_width=4, top_k=3)
    items, scores = beam_search_reference(HashStepModel(vocab, table=table), NoConstraint(), trie, starts,
                                          *left_pad([np.array(hist)]), cfg)
    # unconstrained ranking: (1,0)=.54 [not an item], (0,1)=.28, (0,0)=.12, (1,1)=.06
    assert items.tolist() == [[1, 0, 2]]
    np.testing.assert_allclose(np.exp(scores), [[0.28, 0.12, 0.06]], rtol=1e-6)


def test_fewer_items_than_k_pads():
    codes, sizes = np.array([[0, 1], [1, 0]]), (2, 2)
    cfg = BeamSearchConfig(beam_width=5, top_k=4)
    (ri, rs), (fi, fs) = run_both(lambda: HashStepModel(N_SPECIAL + 4), codes, sizes,
                                  [np.array([1, 3]), np.array([4])], cfg)
    assert (ri[:, 2:] == -1).all() and np.isneginf(rs[:, 2:]).all()
    assert sorted(ri[0, :2].tolist()) == [0, 1]
    assert fi.tolist() == ri.tolist()
    np.testing.assert_array_equal(fs, rs)


def test_model_calls_and_left_pad():
    ids, mask, pos = left_pad([np.array([5, 6, 7]), np.array([8])])
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    codes = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 1]])
    trie = build_trie(codes, (2, 2, 2))
    m = HashStepModel(N_SPECIAL + 6)
    items, _ = decode(m, trie, SidVocab((2, 2, 2), task_tokens=()).level_starts, [np.array([1])] * 5,
                      BeamSearchConfig(beam_width=3, top_k=3, users_per_call=2))
    assert m.calls == 3 * 3  # 3 chunks x (prefill + 2 steps)
    assert (np.sort(items, axis=1) == [0, 1, 2]).all()


def test_decode_length_bucketing_keeps_user_order():
    codes = np.stack(np.unravel_index(np.arange(0, 27, 2), (3, 3, 3)), axis=1)
    trie = build_trie(codes, (3, 3, 3))
    starts = SidVocab((3, 3, 3), task_tokens=()).level_starts
    rng = np.random.default_rng(1)
    hist = [rng.integers(3, 12, n) for n in (5, 1, 3, 2, 4, 1, 6)]
    cfg = BeamSearchConfig(beam_width=4, top_k=3, users_per_call=2)
    items, scores = decode(HashStepModel(12), trie, starts, hist, cfg)
    free_items, _ = decode(HashStepModel(12), trie, starts, hist, cfg, constraint=NoConstraint())
    for u, h in enumerate(hist):
        ref_i, ref_s = beam_search_reference(HashStepModel(12), TrieConstraint(trie), trie, starts, *left_pad([h]), cfg)
        assert items[u].tolist() == ref_i[0].tolist()
        np.testing.assert_allclose(scores[u], ref_s[0], atol=1e-12)
        free_i, _ = beam_search_reference(HashStepModel(12), NoConstraint(), trie, starts, *left_pad([h]), cfg)
        assert free_items[u].tolist() == free_i[0].tolist()


@st.composite
def problems(draw):
    n_levels = draw(st.integers(1, 4))
    sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=n_levels, max_size=n_levels)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    total = int(np.prod(sizes))
    n_items = draw(st.integers(1, min(total, 60)))
    flat = rng.choice(total, n_items, replace=False)
    codes = np.stack(np.unravel_index(flat, sizes), axis=1)
    n_users = draw(st.integers(1, 5))
    histories = [rng.integers(0, N_SPECIAL + sum(sizes), rng.integers(1, 6)) for _ in range(n_users)]
    width = draw(st.integers(1, 8))
    cfg = BeamSearchConfig(beam_width=width, top_k=draw(st.integers(1, width)),
                           normalize=draw(st.sampled_from(["level", "vocab"])))
    extra = draw(st.integers(0, 3))  # tokens after the SID range
    return codes, sizes, histories, cfg, seed, draw(st.booleans()), extra, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_fast_matches_reference(problem):
    codes, sizes, histories, cfg, seed, coarse, extra, dense, sliced = problem
    vocab = N_SPECIAL + sum(sizes) + extra
    fast_model = SlicedHashStepModel if sliced else HashStepModel
    (ri, rs), (fi, fs) = run_both(lambda: HashStepModel(vocab, seed, coarse), codes, sizes, histories, cfg,
                                  TrieConfig() if dense else TrieConfig(dense_max_entries=0),
                                  lambda: fast_model(vocab, seed, coarse))
    assert fi.tolist() == ri.tolist()
    np.testing.assert_allclose(fs, rs, atol=1e-6)
    assert ((ri >= 0) == np.isfinite(rs)).all()
    # every decoded item is unique per user and scores are sorted
    for row, s in zip(ri, rs):
        valid = row[row >= 0]
        assert len(set(valid.tolist())) == len(valid)
        assert (np.diff(s[np.isfinite(s)]) <= 0).all()
    assert ((ri >= 0).sum(axis=1) == min(cfg.top_k, len(codes))).all()


def test_sliced_head_requested_per_level():
    codes = np.array([[0, 0, 0], [0, 1, 1], [1, 1, 0]])
    trie = build_trie(codes, (2, 2, 2))
    starts = SidVocab((2, 2, 2), task_tokens=()).level_starts
    seen = []

    class Spy(SlicedHashStepModel):
        def step(self, tokens, state, head_ids=None):
            seen.append(None if head_ids is None else head_ids.tolist())
            return super().step(tokens, state, head_ids)

    beam_search_fast(Spy(N_SPECIAL + 6), trie, starts, *left_pad([np.array([1])]), BeamSearchConfig(4, 3))
    assert seen == [[5, 6], [7, 8]]  # level 1 then level 2 token ids
    seen.clear()
    beam_search_fast(Spy(N_SPECIAL + 6), trie, starts, *left_pad([np.array([1])]),
                     BeamSearchConfig(4, 3, normalize="vocab"))
    assert seen == [None, None]


def test_config_validation():
    with pytest.raises(ValueError):
        BeamSearchConfig(beam_width=2, top_k=3)
    with pytest.raises(ValueError):
        BeamSearchConfig(normalize="softmax")


def test_unconstrained_config_decodes_like_no_constraint():
    codes = np.stack(np.unravel_index(np.arange(0, 27, 3), (3, 3, 3)), axis=1)
    trie = build_trie(codes, (3, 3, 3))
    starts = SidVocab((3, 3, 3), task_tokens=()).level_starts
    hist = [np.array([3, 5, 7]), np.array([4]), np.array([8, 9])]
    free_cfg = BeamSearchConfig(beam_width=6, top_k=6, users_per_call=2, constrained=False)
    by_cfg, s_cfg = decode(HashStepModel(12), trie, starts, hist, free_cfg)
    by_arg, s_arg = decode(HashStepModel(12), trie, starts, hist, free_cfg, constraint=NoConstraint())
    assert by_cfg.tolist() == by_arg.tolist()
    np.testing.assert_array_equal(s_cfg, s_arg)
    constrained, _ = decode(HashStepModel(12), trie, starts, hist, BeamSearchConfig(beam_width=6, top_k=6))
    # 9 of 27 tuples are catalog SIDs: constrained lists are full, free ones hold non-catalog tuples (-1)
    assert (constrained >= 0).all() and (by_cfg < 0).any()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(1, 300), st.integers(1, 12), st.integers(0, 10_000))
def test_stable_top_equals_stable_argsort(rows, n, width, seed):
    from genrec_model.decode.beam_search import stable_top

    rng = np.random.default_rng(seed)
    cand = rng.integers(-5, 3, size=(rows, n)).astype(np.float64)  # many ties
    cand[rng.random((rows, n)) < 0.2] = -np.inf
    want = np.argsort(-cand, axis=1, kind="stable")[:, :width]
    assert stable_top(cand, width).tolist() == want.tolist()
