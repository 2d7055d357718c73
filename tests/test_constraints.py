"""Constraint tests in the style of transformers' test_logits_process.py (vocab of 5)."""
import numpy as np
import pytest

from genrec_model.decode.constraints import EmptyAllowedSetError, NoConstraint, TrieConstraint
from genrec_model.decode.trie import TrieConfig, build_trie

SIZES = (5, 5)
# items: (0,1) (0,3) (2,4) (4,0)
CODES = np.array([[0, 1], [0, 3], [2, 4], [4, 0]])


@pytest.fixture(params=[TrieConfig(), TrieConfig(dense_max_entries=0)], ids=["dense", "csr"])
def trie(request):
    return build_trie(CODES, SIZES, request.param)


def test_first_level_mask(trie):
    scores = np.arange(10, dtype=np.float32).reshape(2, 5)
    before = scores.copy()
    out = TrieConstraint(trie)(np.zeros((2, 0), dtype=np.int64), scores)
    assert np.isinf(out).tolist() == [[False, True, False, True, False]] * 2
    assert out[~np.isinf(out)].tolist() == [0, 2, 4, 5, 7, 9]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(scores, before)  # input not modified in place


def test_second_level_mask(trie):
    scores = np.zeros((3, 5))
    prefixes = np.array([[0], [2], [4]])
    before = prefixes.copy()
    out = TrieConstraint(trie)(prefixes, scores)
    assert np.isinf(out).tolist() == [
        [True, False, True, False, True],
        [True, True, True, True, False],
        [False, True, True, True, True],
    ]
    assert (out[np.isinf(out)] < 0).all()
    np.testing.assert_array_equal(prefixes, before)
    assert (scores == 0).all()


def test_empty_allowed_set_raises(trie):
    with pytest.raises(EmptyAllowedSetError, match=r"\[1\]"):
        TrieConstraint(trie)(np.array([[0], [1]]), np.zeros((2, 5)))


def test_shape_checks(trie):
    with pytest.raises(ValueError):
        TrieConstraint(trie)(np.zeros((2, 0), dtype=np.int64), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        TrieConstraint(trie)(np.zeros((2, 2), dtype=np.int64), np.zeros((2, 5)))
    with pytest.raises(ValueError):
        NoConstraint()(np.zeros((3, 0), dtype=np.int64), np.zeros((2, 5)))


def test_no_constraint_is_identity_copy():
    scores = np.array([[1.0, -2.0, 3.0, 0.5, 0.0]])
    out = NoConstraint()(np.array([[1]]), scores)
    np.testing.assert_array_equal(out, scores)
    out[0, 0] = 99.0
    assert scores[0, 0] == 1.0
