"""Decoding cost of the item-level variants (`train.model.item_query`), one process, same histories and trie.

    python benchmarks/item_query_speed.py --conf conf/beauty.yaml [--beam 100] [--users 2000]

For each variant a model of the config's shape (layers, width, heads) over the config's real SIDs (its
lakehouse's `item_sids`: the trie, its 256 prefixes and ~47 children per prefix on Beauty) is built with
random weights, exported to ONNX exactly as the export job does, and decodes the same real test histories
with the production decoder (onnxruntime + the fused children-only kernel) at 1 thread. Weights do not
change the work done per user (every beam is expanded, the trie is the real one), so the ratios are the
decoding cost of the variants; their quality is in README (validation, `benchmarks/item_representation.py`).
Prints users/s per variant and its ratio to `step` (the decoder step per beam), CPU seconds of this process.
Last line: `variant=<best> speedup_vs_step=<x> users_per_s=<n>`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.decode_bench import macs_per_user, real_histories, timed  # noqa: E402
from genrec_model.catalog.sid_codes import level_sizes_of  # noqa: E402
from genrec_model.config import load_config  # noqa: E402
from genrec_model.decode.beam_search import decode  # noqa: E402
from genrec_model.decode.config import BeamSearchConfig, OrtConfig  # noqa: E402
from genrec_model.decode.ort_step import load_step_model  # noqa: E402
from genrec_model.decode.trie import build_trie  # noqa: E402
from genrec_model.model.artifacts import write_export_manifest  # noqa: E402
from genrec_model.model.export import export_onnx, export_shared_step  # noqa: E402
from genrec_model.model.item_content import item_level  # noqa: E402
from genrec_model.model.seq_model import SeqModel  # noqa: E402
from genrec_model.model.sid_vocab import SidVocab  # noqa: E402


def variant_model(base, vocab: SidVocab, name: str, max_positions: int, seed: int) -> SeqModel:
    """`step`, `user`, `attend` or `attend+mlp<width>` on the config's model shape, random weights."""
    query, _, mlp = name.partition("+mlp")
    cfg = replace(base, vocab_size=vocab.vocab_size, max_positions=max_positions, item_content_dim=0,
                  item_codebooks=0, item_softmax="prefix", item_query=query, item_query_mlp=int(mlp or 0),
                  item_tokens=item_level(vocab) if query != "step" else (0, 0))
    torch.manual_seed(seed)
    return SeqModel(cfg).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", required=True)
    ap.add_argument("--variants", nargs="+", default=["step", "user", "attend", "attend+mlp256"])
    ap.add_argument("--beam", type=int, default=100)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--users-per-call", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(args.conf, args.overrides)
    torch.set_num_threads(args.threads)
    from deltalake import DeltaTable

    sids = DeltaTable(os.path.join(cfg.lakehouse_root(), "item_sids")).to_pandas().sort_values("item_id")
    codes = np.stack(sids["codes"].to_numpy()).astype(np.int64)
    sizes = level_sizes_of(codes, cfg.sids.rqvae.codebook_size)
    vocab = SidVocab(tuple(sizes))
    trie = build_trie(codes, list(sizes))
    item_tokens = vocab.codes_to_tokens(codes)
    max_history = cfg.train.data.max_history
    histories, _ = real_histories(cfg.lakehouse_root(), {i: n for n, i in enumerate(sids["item_id"])}, item_tokens,
                                  max_history, args.users, args.seed)
    mean_len = float(np.mean([len(h) for h in histories]))
    max_positions = 1 + (max_history + 1) * vocab.n_levels + 2
    bcfg = BeamSearchConfig(beam_width=args.beam, top_k=min(args.top_k, args.beam), users_per_call=args.users_per_call,
                            normalize="children")
    kids = [float(np.mean(np.diff(trie.indptr[d]))) for d in range(trie.n_levels)]
    print(f"{len(codes)} items, level sizes {list(sizes)}, {len(histories)} test histories (mean {mean_len:.1f} "
          f"tokens), beam {args.beam}, {args.users_per_call} users per call, {args.threads} thread(s)", flush=True)
    rates = {}
    for name in args.variants:
        model = variant_model(cfg.train.model, vocab, name, max_positions, args.seed)
        with tempfile.TemporaryDirectory(prefix="item_query_speed_") as out:
            write_export_manifest(out, export_onnx(model, vocab, out, f"bench-{name}", "bench"))
            export_shared_step(model, out)
            step_model = load_step_model(out, OrtConfig(intra_op_threads=args.threads, use_gpu=False))
            decode(step_model, trie, vocab.level_starts, histories[:8], bcfg)  # warm: Numba, ORT first run
            _, seconds = timed(decode, step_model, trie, vocab.level_starts, histories, bcfg)
        rates[name] = len(histories) / seconds
        macs = macs_per_user(model.cfg.to_dict(), mean_len, kids, args.beam)
        print(f"{name}: {rates[name]:.1f} users/s ({seconds / len(histories) * 1e3:.3f} CPU ms/user), "
              f"{macs / 1e6:.1f} M multiply-adds per user, {rates[name] / rates.get('step', rates[name]):.2f}x step",
              flush=True)
    best = max((n for n in rates if n != "step"), key=rates.get, default="step")
    print(f"variant={best} speedup_vs_step={rates[best] / rates.get('step', rates[best]):.2f} "
          f"users_per_s={rates[best]:.1f}")


if __name__ == "__main__":
    main()
