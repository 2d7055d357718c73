import numpy as np
import pytest
import torch

from genrec_model.catalog.config import RQVAEConfig
from genrec_model.catalog.frozen_rqvae import FrozenRQVAE
from genrec_model.catalog.rqvae import freeze, kmeans, train_rqvae


def planted_clusters(seed: int = 0, n_clusters: int = 8, per: int = 50, dim: int = 16):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)) * 5
    labels = np.repeat(np.arange(n_clusters), per)
    x = centers[labels] + rng.normal(size=(len(labels), dim)) * 0.3
    return x.astype(np.float32), labels


def small_cfg(**kw) -> RQVAEConfig:
    base = dict(input_dim=16, hidden_dims=(32,), latent_dim=8, n_levels=2, codebook_size=8,
                epochs=30, batch_size=64, seed=0)
    return RQVAEConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_planted_clusters_at_level_one(seed):
    x, labels = planted_clusters(seed)
    model, report = train_rqvae(x, small_cfg(seed=seed))
    codes = freeze(model).assign(x)
    per_cluster = [np.unique(codes[labels == k, 0]) for k in range(8)]
    assert all(len(u) == 1 for u in per_cluster), per_cluster  # one code per cluster
    assert len({int(u[0]) for u in per_cluster}) == 8  # distinct clusters, distinct codes
    assert report.final_utilization[0] == 1.0
    assert len(report.epoch_loss) == 30 and report.epoch_loss[-1] < report.epoch_loss[0]


def test_assignment_deterministic_and_numpy_equals_torch():
    x, _ = planted_clusters(3)
    m1, r1 = train_rqvae(x, small_cfg(epochs=5))
    m2, r2 = train_rqvae(x, small_cfg(epochs=5))
    assert r1.epoch_loss == r2.epoch_loss
    torch_codes = m1.assign(x)
    frozen = freeze(m1)
    np_codes = frozen.assign(x, chunk_size=37)  # chunking must not change anything
    assert torch_codes.dtype == np.int32 and np_codes.dtype == np.int32
    np.testing.assert_array_equal(torch_codes, np_codes)
    np.testing.assert_array_equal(np_codes, frozen.assign(x))
    np.testing.assert_array_equal(np_codes, freeze(m2).assign(x))


def test_numpy_path_matches_torch_on_random_inputs_off_distribution():
    x, _ = planted_clusters(4)
    model, _ = train_rqvae(x, small_cfg(epochs=3, n_levels=3))
    q = np.random.default_rng(9).normal(size=(500, 16)).astype(np.float32) * 3
    np.testing.assert_array_equal(model.assign(q), freeze(model).assign(q, chunk_size=64))


def test_dead_code_reset_prevents_collapse():
    x, _ = planted_clusters(0)
    # random codebook init collapses onto a few codes without reset
    _, plain = train_rqvae(x, small_cfg(kmeans_init=False, dead_code_reset=False))
    _, reset = train_rqvae(x, small_cfg(kmeans_init=False, dead_code_reset=True))
    assert plain.final_utilization[0] <= 0.5
    assert reset.final_utilization[0] == 1.0
    assert min(reset.final_utilization) >= 0.875
    assert sum(reset.epoch_dead_reset[0]) > 0


def test_train_sample_size_and_scaler():
    x, _ = planted_clusters(5)
    model, report = train_rqvae(x, small_cfg(epochs=2, train_sample_size=100))
    assert report.n_train == 100
    frozen = freeze(model)
    assert frozen.assign(x).shape == (400, 2)  # assignment still covers all rows
    assert np.all(frozen.std > 0) and frozen.mean.shape == (16,)


def test_frozen_assign_exact_on_hand_made_codebook():
    # identity encoder, 2 levels, 1-d latents: x=2.6 -> level0 nearest of {0, 2, 5} is 2,
    # residual .6 -> nearest of {0, 1, -9} is 1 (|.6-1|=.4 < .6); x=4 -> 5 (index 2), residual -1 -> 0
    frozen = FrozenRQVAE(mean=np.zeros(1, np.float32), std=np.ones(1, np.float32),
                         weights=(np.ones((1, 1), np.float32),), biases=(np.zeros(1, np.float32),),
                         codebooks=np.array([[[0.0], [2.0], [5.0]], [[0.0], [1.0], [-9.0]]], np.float32))
    x = np.array([[2.6], [4.0], [-0.2]], np.float32)
    assert frozen.assign(x).tolist() == [[1, 1], [2, 0], [0, 0]]
    with pytest.raises(ValueError):
        frozen.assign(np.zeros((2, 3), np.float32))


def test_kmeans_finds_separated_centers():
    pts = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]], dtype=torch.float64)
    cents = kmeans(pts, 2, iters=5, gen=torch.Generator().manual_seed(0))
    got = sorted(map(tuple, cents.numpy().round(3).tolist()))
    assert got == [(0.05, 0.0), (10.05, 10.0)]
