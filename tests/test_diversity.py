import numpy as np
import pytest

from genrec_model.serve.diversity import (
    catalog_coverage,
    intra_list_diversity,
)

CATS = np.array([0, 0, 1, 2, 1, 0])  # category of items 0..5


def test_catalog_coverage_ignores_padding():
    ranked = np.array([[0, 1, -1], [1, 4, 0]])
    assert catalog_coverage(ranked, n_items=6) == pytest.approx(3 / 6)
    with pytest.raises(ValueError):
        catalog_coverage(ranked, n_items=0)


def test_intra_list_diversity_exact():
    # user 0: cats 0,0,1 -> pairs (0,0) same, (0,1), (0,1) -> 1 - 1/3
    # user 1: cats 0,1,2 -> no same pair -> 1
    # user 2: one valid item -> no pairs, left out
    ranked = np.array([[0, 1, 2], [0, 2, 3], [5, -1, -1]])
    assert intra_list_diversity(ranked, CATS) == pytest.approx(((1 - 1 / 3) + 1.0) / 2)
    # all the same category -> 0; padding does not create pairs
    assert intra_list_diversity(np.array([[0, 1, 5, -1]]), CATS) == pytest.approx(0.0)
    assert np.isnan(intra_list_diversity(np.array([[3, -1]]), CATS))


def test_category_level_auto_skips_shared_root():
    from genrec_model.serve.diversity import category_codes, pick_category_level

    assert pick_category_level([1, 5, 9]) == 1
    assert pick_category_level([3, 5]) == 0 and pick_category_level([1, 1]) == 0
    assert pick_category_level([1, 5], level=0) == 0
    paths = [["Store", "Lab", "x"], ["Store", "Test"], ["Store", "Lab"], None, ["Store"]]
    codes = category_codes(paths, 1)
    assert codes[0] == codes[2] != codes[1]
    assert codes[3] < 0 and codes[4] < 0 and codes[3] != codes[4]
