import numpy as np
import pytest
import torch

from genrec_model.catalog.product_quantizer import fit_product_quantizer, pq_encode


def test_codes_are_nearest_centroids_per_subspace_and_deterministic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    c = fit_product_quantizer(x, n_subspaces=3, codebook_size=8, iters=5, seed=1)
    assert c.shape == (3, 8, 4)
    np.testing.assert_array_equal(c, fit_product_quantizer(x, 3, 8, iters=5, seed=1))
    codes = pq_encode(torch.from_numpy(x), torch.from_numpy(c)).numpy()
    assert codes.shape == (200, 3) and codes.min() >= 0 and codes.max() < 8
    for m in range(3):  # brute force: nearest centroid of each item's m-th slice
        d = ((x[:, None, 4 * m:4 * m + 4] - c[m][None]) ** 2).sum(-1)
        np.testing.assert_array_equal(codes[:, m], d.argmin(1))
    # quantization error falls with more centroids
    def error(k):
        cb = fit_product_quantizer(x, 3, k, iters=5)
        q = pq_encode(torch.from_numpy(x), torch.from_numpy(cb)).numpy()
        recon = np.concatenate([cb[m][q[:, m]] for m in range(3)], axis=1)
        return float(((x - recon) ** 2).sum(1).mean())

    assert error(16) < error(2)


def test_width_must_split_into_subspaces():
    with pytest.raises(ValueError, match="not divisible"):
        fit_product_quantizer(np.zeros((10, 10), np.float32), 3, 4)
