import numpy as np
import pytest

from genrec_model.catalog.sid_codes import sid_string
from genrec_model.model.sid_vocab import BOS, EOS, PAD, SidVocab


def test_layout_and_round_trip():
    v = SidVocab((4, 3, 2), n_extra=5)
    assert (PAD, BOS, EOS) == (0, 1, 2)
    assert v.n_special == 6 and v.task_id("SEP") == 3 and v.task_id("S2T") == 5
    assert v.level_range(0) == (6, 10) and v.level_range(1) == (10, 13) and v.level_range(2) == (13, 15)
    assert v.sid_end == 15 and v.vocab_size == 20
    codes = np.array([[0, 0, 0], [3, 2, 1], [1, 0, 1]])
    toks = v.codes_to_tokens(codes)
    assert toks.tolist() == [[6, 10, 13], [9, 12, 14], [7, 10, 14]]
    assert v.tokens_to_codes(toks).tolist() == codes.tolist()
    assert v.extra_token([0, 4]).tolist() == [15, 19]
    assert sid_string([3, 2, 1]) == "<a_3><b_2><c_1>"


def test_rejects_out_of_range():
    v = SidVocab((4, 3))
    with pytest.raises(ValueError):
        v.codes_to_tokens(np.array([[4, 0]]))
    with pytest.raises(ValueError):
        v.tokens_to_codes(np.array([[v.level_range(1)[0], v.level_range(1)[0]]]))  # level-1 token at level 0
    with pytest.raises(ValueError):
        v.codes_to_tokens(np.array([[0, 0, 0]]))


def test_dict_round_trip():
    v = SidVocab((256, 256, 7), task_tokens=("SEP", "T2S"), n_extra=11)
    d = v.to_dict()
    assert d["vocab_size"] == 5 + 519 + 11
    assert SidVocab.from_dict(d) == v
    d["n_special"] = 9
    with pytest.raises(ValueError):
        SidVocab.from_dict(d)
