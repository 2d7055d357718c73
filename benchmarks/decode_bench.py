"""Constrained beam-search decoding benchmark on the shipped model (one process, baselines timed beside ours).

    python benchmarks/decode_bench.py --conf conf/beauty.yaml [--users 2000] [--hf-users 100] [overrides...]

1. The production decoder (onnxruntime graphs of the latest export under the config's artifacts, Numba trie
   search; with normalize="children" the fused children-only head) on real test histories read from the
   config's lakehouse (each user's history before the test item, the job's max_history), vs transformers
   `generate(num_beams, prefix_allowed_tokens_fn=<dict trie>)` on the same weights with the SAME scoring:
   a LogitsProcessor renormalizes the allowed tokens (log-softmax over a beam's trie children) where the
   model is decoded with normalize="children"; with normalize="level" the processor renormalizes over the
   level's range. top10_identical = share of users whose top-k item lists are identical.
2. users/s of our decoder at several users per call (what recommend.users_per_call trades).
3. Trie step alone at `--trie-items` synthetic items (3 x 256 codes + dedup digit) on random logits:
   microseconds per user for a full decode, Numba kernel vs a Python dict trie.
4. Multiply-adds per user of the decode (trunk per beam row + head columns actually computed).
Last line: `speedup_vs_hf=<x> top10_identical=<fraction> users_per_s=<n>`.
CPU seconds of this process (1 thread everywhere), so a busy neighbour does not change the ratios much.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from transformers import LogitsProcessorList  # noqa: E402

from genrec_model.config import load_config  # noqa: E402
from genrec_model.decode.beam_search import decode, left_pad, level_logsumexp, topk_children  # noqa: E402
from genrec_model.decode.config import BeamSearchConfig, OrtConfig  # noqa: E402
from genrec_model.decode.ort_step import load_step_model  # noqa: E402
from genrec_model.decode.trie import build_trie  # noqa: E402
from genrec_model.model.config import SeqModelConfig  # noqa: E402
from genrec_model.model.hf_compat import to_hf_gpt2  # noqa: E402
from genrec_model.model.sid_vocab import SidVocab, history_tokens  # noqa: E402
from udfs.recommend_fns import beam_configs  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    users: int = 2000
    hf_users: int = 100
    beam: int = 20
    top_k: int = 10
    users_per_call: int = 8
    hf_batch: int = 1  # HF generate was fastest at 1 user per call (scanned 1, 4, 8, 16, 32: 54-116 ms/user)
    threads: int = 1
    trie_items: int = 200_000
    trie_users: int = 2000
    dict_users: int = 100
    seed: int = 0


def synthetic_codes(n: int, sizes: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, ...]]:
    """(n, len(sizes)+1) random codes with a dedup digit appended (TIGER), and the level sizes."""
    sem = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)
    key = np.ravel_multi_index(sem.T, sizes)
    order = np.argsort(key, kind="stable")
    first = np.searchsorted(key[order], key[order], side="left")
    dedup = np.empty(n, dtype=np.int64)
    dedup[order] = np.arange(n) - first
    return np.concatenate([sem, dedup[:, None]], axis=1), tuple(sizes) + (int(dedup.max()) + 1,)


def timed(fn, *args, **kw):
    """(result, seconds). Process CPU time, not wall time: the benchmark runs single-threaded
    (ORT, torch, Numba at 1 thread) on a shared machine, where wall time mostly measures the
    neighbours. `wall` below reports wall seconds of the last call for reference."""
    global wall
    gc.collect()
    gc.disable()  # the benchmark's own big heaps (tries, models) would make collections dominate
    try:
        t, w = time.process_time(), time.perf_counter()
        out = fn(*args, **kw)
        wall = time.perf_counter() - w
        return out, time.process_time() - t
    finally:
        gc.enable()


wall = 0.0


# ---------------------------------------------------------------- Hugging Face baseline


def token_dict_trie(codes: np.ndarray, vocab: SidVocab) -> dict[tuple, list[int]]:
    tokens = vocab.codes_to_tokens(codes)
    trie: dict[tuple, set] = {}
    for row in tokens.tolist():
        for d in range(len(row)):
            trie.setdefault(tuple(row[:d]), set()).add(row[d])
    return {k: sorted(v) for k, v in trie.items()}


class Renormalize:
    """LogitsProcessor: log-softmax over the tokens still allowed (finite) -- after HF's own full-vocabulary
    log-softmax and the prefix_allowed_tokens_fn mask, this gives a beam's children their log-softmax among
    themselves (normalize="children"); with `ranges` (token-id ranges per generated position) it
    renormalizes over that level's range instead (normalize="level")."""

    def __init__(self, prompt_len: int, ranges: list[tuple[int, int]] | None = None):
        self.prompt_len, self.ranges = prompt_len, ranges

    def __call__(self, input_ids, scores):
        if self.ranges is not None:
            lo, hi = self.ranges[input_ids.shape[1] - self.prompt_len]
            level = torch.full_like(scores, -float("inf"))
            level[:, lo:hi] = torch.log_softmax(scores[:, lo:hi], dim=-1)
            return torch.where(torch.isfinite(scores), level, scores)
        return torch.log_softmax(scores, dim=-1)


class UserStateItems:
    """LogitsProcessor for an `item_query` "user"/"attend" model: HF runs a decoder step on the prefix token and
    scores the item level from it, which this model does not do; at the item level the scores become the
    model's own (`SeqModel.item_states`: the state that predicted the prefix + the prefix shift, + for "attend"
    the prefix's read of the history's final states, kept by a hook on the final LayerNorm at the prefill;
    every beam of a user shares them). Disallowed tokens stay -inf; `Renormalize` then takes the log-softmax
    over the beam's children, as the model was trained."""

    def __init__(self, hf, model, prompt_len: int, item_pos: int, attention_mask: torch.Tensor):
        self.model, self.prompt_len, self.item_pos, self.mask = model, prompt_len, item_pos, attention_mask.bool()
        self.last = self.states = None
        self.hook = hf.transformer.ln_f.register_forward_hook(self._keep)

    def _keep(self, module, args, out):
        self.last = out

    def __call__(self, input_ids, scores):
        pos = input_ids.shape[1] - self.prompt_len
        if pos == self.item_pos - 1:
            self.states = self.last  # (B * beams, T, D): the prefill's final states
        if pos == self.item_pos:
            m, n = self.model, input_ids.shape[0]
            table = m.token_table()
            e = table[input_ids[:, -1]].unsqueeze(1)  # (N, 1, D) the prefix token
            keys = None
            if m.cfg.item_query == "attend":
                mask = self.mask.repeat_interleave(n // self.mask.shape[0], dim=0).unsqueeze(1)  # (N, 1, T)
                keys = (*m.item_keys(self.states), mask)
            logits = m.logits(m.item_query_state(self.states[:, -1:], e, keys)[:, 0])
            scores = torch.where(torch.isfinite(scores), logits, scores)
        return scores


def hf_decode(hf, histories, dict_trie, token_to_item, vocab: SidVocab, cfg: BenchConfig,
              normalize: str, user_model=None) -> tuple[np.ndarray, np.ndarray]:
    """user_model: the SeqModel of an item_query "user"/"attend" model (its item level, `UserStateItems`)."""
    """(items, scores) (U, top_k); batches of hf_batch users in order of history length (as our `decode`)."""
    n_levels = vocab.n_levels
    out = np.full((len(histories), cfg.top_k), -1, dtype=np.int64)
    out_s = np.full((len(histories), cfg.top_k), -np.inf)
    order = np.argsort([len(h) for h in histories], kind="stable")
    for s in range(0, len(histories), cfg.hf_batch):
        idx = order[s : s + cfg.hf_batch]
        ids, mask, _ = left_pad([histories[i] for i in idx])
        prompt = ids.shape[1]

        def allowed(batch_id, sent, prompt=prompt):
            return dict_trie.get(tuple(sent[prompt:].tolist()), [])

        ranges = None if normalize == "children" else [vocab.level_range(d) for d in range(n_levels)]
        procs = [Renormalize(prompt, ranges)]
        if user_model is not None:
            procs.insert(0, UserStateItems(hf, user_model, prompt, n_levels - 1, torch.as_tensor(mask)))
        with torch.no_grad():
            gen = hf.generate(
                input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), num_beams=cfg.beam,
                num_return_sequences=cfg.top_k, max_new_tokens=n_levels, min_new_tokens=n_levels,
                do_sample=False, early_stopping=True, length_penalty=0.0, prefix_allowed_tokens_fn=allowed,
                logits_processor=LogitsProcessorList(procs), pad_token_id=0,
                return_dict_in_generate=True, output_scores=True,
            )
        if user_model is not None:
            procs[0].hook.remove()
        new = gen.sequences[:, prompt:].numpy().reshape(-1, cfg.top_k, n_levels)
        seq_scores = gen.sequences_scores.numpy().reshape(-1, cfg.top_k)  # summed log-probs (length_penalty 0)
        for i, user, sc in zip(idx, new, seq_scores):
            out[i] = [token_to_item.get(tuple(t), -1) for t in user.tolist()]
            out_s[i] = sc
    return out, out_s


def identical_up_to_ties(a_items, a_scores, b_items, b_scores, tol: float = 1e-4) -> np.ndarray:
    """(U,) bool: same items, in the same order except where their scores tie (equal within `tol`, e.g.
    items with identical text share codes and scores, and any order of them is correct)."""
    same_set = np.array([set(x) == set(y) for x, y in zip(a_items, b_items)])
    return same_set & (np.abs(a_scores - b_scores) <= tol).all(axis=1)


# ---------------------------------------------------------------- trie step alone


def kernel_full_decode(trie, logits_by_level, n_users: int, width: int, with_lse: bool) -> None:
    scores = np.zeros(n_users)
    nodes = np.zeros(n_users, dtype=np.int64)
    n_rows = 1
    allowed = trie.subtree_allowed(None)
    for d, lg in enumerate(logits_by_level):
        lg = lg[: n_users * n_rows]
        lse = level_logsumexp(lg, 0, lg.shape[1]) if with_lse else np.zeros(len(lg))
        parent, code, child, best = topk_children(lg, 0, lse, scores, nodes, n_rows, width, trie.indptr[d],
                                                  trie.child_code[d], False, allowed[d])
        scores, nodes, n_rows = best.ravel(), child.ravel(), width


def dict_full_decode(dict_trie, logits_by_level, n_users: int, width: int) -> None:
    """Python dict trie, one lookup per beam (what prefix_allowed_tokens_fn does), numpy per beam."""
    for u in range(n_users):
        beams = [((), 0.0)]
        for d, lg in enumerate(logits_by_level):
            rows = lg[u * width : u * width + len(beams)] if d else lg[u : u + 1]
            cand_s, cand_p = [], []
            for r, (prefix, score) in enumerate(beams):
                allowed = dict_trie[prefix]
                cand_s.append(score + rows[r, allowed])
                cand_p.extend((prefix + (c,)) for c in allowed)
            s = np.concatenate(cand_s)
            top = np.argsort(-s, kind="stable")[:width]
            beams = [(cand_p[i], float(s[i])) for i in top]


def trie_step_bench(cfg: BenchConfig, rng) -> tuple[float, float, float]:
    codes, sizes = synthetic_codes(cfg.trie_items, (256, 256, 256), rng)
    trie = build_trie(codes, sizes)
    dict_trie: dict[tuple, list[int]] = {}
    for row in codes.tolist():
        for d in range(len(row)):
            dict_trie.setdefault(tuple(row[:d]), []).append(row[d])
    dict_trie = {k: sorted(set(v)) for k, v in dict_trie.items()}
    u, w = cfg.trie_users, cfg.beam
    logits = [rng.standard_normal((u * (1 if d == 0 else w), s)).astype(np.float32) for d, s in enumerate(sizes)]
    logp64 = [lg.astype(np.float64) for lg in logits]
    kernel_full_decode(trie, logits, 10, w, True)  # compile / warm
    _, t_k = timed(kernel_full_decode, trie, logits, u, w, False)
    _, t_kl = timed(kernel_full_decode, trie, logits, u, w, True)
    _, t_d = timed(dict_full_decode, dict_trie, logp64, cfg.dict_users, w)
    return t_k / u * 1e6, t_kl / u * 1e6, t_d / cfg.dict_users * 1e6


# ---------------------------------------------------------------- FLOP floor


def macs_per_user(mc: dict, hist_len: float, head_cols: list[float], beam: int) -> float:
    """Multiply-adds of one user's decode: the history's tokens through the trunk once, then
    len(head_cols) - 1 steps of `beam` rows; head_cols[d] = output-head columns computed per row at level d.
    An item_query "user"/"attend" model runs no trunk step before the item level: its head columns, and for
    "attend" the history's read keys once (2 x D x D per history token) and per beam the read (2 x T x D)
    and its output (D x D)."""
    d, L = mc["d_model"], mc["n_layer"]
    per_token = L * (4 * d * d + 2 * d * mc["d_ff"])  # qkv + proj + mlp
    prefill = hist_len * per_token + L * 2 * d * hist_len * (hist_len + 1) / 2 + d * head_cols[0]
    n_steps = len(head_cols) - 1
    trunk_steps = n_steps - (1 if mc.get("item_query", "step") != "step" else 0)
    steps = sum(beam * ((per_token + L * 2 * d * (hist_len + i + 1)) * (i < trunk_steps) + d * head_cols[i + 1])
                for i in range(n_steps))
    if mc.get("item_query", "step") == "attend":
        steps += hist_len * 2 * d * d + beam * (2 * d * hist_len + d * d)
    steps += beam * 2 * d * mc.get("item_query_mlp", 0)
    return prefill + steps


def real_histories(root: str, item_index: dict, item_tokens: np.ndarray, max_history: int, n: int, seed: int):
    """Token histories of `n` seeded users and their test items (-1 if unknown): each user's items before
    the test item (the last), as the recommend job's `test` split, known items only, the last `max_history`."""
    from deltalake import DeltaTable

    inter = DeltaTable(os.path.join(root, "interactions")).to_pandas(columns=["user_id", "item_id", "seq_pos"])
    seqs = inter.sort_values(["user_id", "seq_pos"]).groupby("user_id", sort=True)["item_id"].agg(list)
    out, targets = [], []
    for u in np.random.default_rng(seed).permutation(len(seqs)):
        known = [item_index[i] for i in seqs.iloc[u][:-1] if i in item_index][-max_history:]
        if known:
            out.append(history_tokens(np.asarray(known), item_tokens))
            targets.append(item_index.get(seqs.iloc[u][-1], -1))
        if len(out) == n:
            break
    return out, np.asarray(targets)


def load_shipped(cfg):
    """(export folder, its manifest, item ids, codes, vocab, plain torch model equal to the graphs, max_history)."""
    from genrec_model.model.artifacts import CHECKPOINT, load_head, read_export, read_export_items, read_model
    from genrec_model.model.item_content import plain_model

    art = read_model(cfg.artifact_path("models"), cfg.recommend.model_version)
    manifest = read_export(art.onnx_dir)
    item_ids, codes, _ = read_export_items(art.onnx_dir)
    vocab = SidVocab.from_dict(manifest["vocab"])
    ckpt = torch.load(os.path.join(art.path, CHECKPOINT), map_location="cpu", weights_only=True)
    mc = ckpt["model_config"]
    weight, bias, _ = load_head(art.onnx_dir)
    base = SeqModelConfig(**{**mc, "item_tokens": tuple(mc.get("item_tokens", (0, 0)))})
    model = plain_model(base, ckpt["state_dict"], torch.from_numpy(weight), torch.from_numpy(bias))
    return art.onnx_dir, manifest, item_ids, codes, vocab, model, art.max_history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", required=True, help="genrec config: its artifacts' latest export and its lakehouse")
    for f, default in BenchConfig.__dataclass_fields__.items():
        ap.add_argument(f"--{f.replace('_', '-')}", type=type(default.default), default=default.default)
    ap.add_argument("--calls", type=int, nargs="*", default=[1, 8, 32], help="users per call to compare")
    ap.add_argument("--skip-trie", action="store_true", help="skip the synthetic trie-step microbenchmark")
    ap.add_argument("--int8", action="store_true", help="also decode int8-quantized copies of the graphs (export.int8)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = BenchConfig(**{f: getattr(args, f) for f in BenchConfig.__dataclass_fields__})
    gcfg = load_config(args.conf, args.overrides)
    torch.set_num_threads(cfg.threads)
    onnx_dir, manifest, item_ids, codes, vocab, model, max_history = load_shipped(gcfg)
    normalize = beam_configs(gcfg.recommend, manifest["model_config"])[0].normalize
    trie = build_trie(codes, list(vocab.level_sizes))
    item_tokens = vocab.codes_to_tokens(codes)
    histories, targets = real_histories(gcfg.lakehouse_root(), {i: n for n, i in enumerate(item_ids)}, item_tokens,
                               max_history, cfg.users, cfg.seed)
    mean_len = float(np.mean([len(h) for h in histories]))
    ort_model = load_step_model(onnx_dir, OrtConfig(intra_op_threads=cfg.threads, use_gpu=False))
    print(f"model {manifest['model_version']}: {len(codes)} items, level sizes {vocab.level_sizes}, vocab "
          f"{vocab.vocab_size}, {model.num_params() / 1e6:.2f}M params; {len(histories)} test histories "
          f"(mean {mean_len:.1f} tokens); beam {cfg.beam}, top {cfg.top_k}, normalize={normalize}, "
          f"{type(ort_model).__name__}, threads {cfg.threads}", flush=True)

    ours_cfg = BeamSearchConfig(beam_width=cfg.beam, top_k=cfg.top_k, users_per_call=cfg.users_per_call,
                                normalize=normalize)
    decode(ort_model, trie, vocab.level_starts, histories[:4], ours_cfg)  # warm (Numba compile, ORT first run)
    (ours_items, ours_scores), t_ours = timed(decode, ort_model, trie, vocab.level_starts, histories, ours_cfg)
    ups = len(histories) / t_ours
    print(f"ours: {len(histories)} users in {t_ours:.2f} CPU s ({wall:.2f} wall s) -> {ups:.1f} users/s "
          f"({t_ours / len(histories) * 1e3:.3f} ms/user), {cfg.users_per_call} users per call", flush=True)
    for calls in args.calls:
        c = BeamSearchConfig(beam_width=cfg.beam, top_k=cfg.top_k, users_per_call=calls, normalize=normalize)
        _, t = timed(decode, ort_model, trie, vocab.level_starts, histories, c)
        print(f"  users per call {calls}: {len(histories) / t:.1f} users/s", flush=True)
    if normalize == "children" and ort_model.item_query_tables is None:  # a step-free item level has no "level" twin
        full = BeamSearchConfig(beam_width=cfg.beam, top_k=cfg.top_k, users_per_call=cfg.users_per_call, normalize="level")
        (_, _), t_level = timed(decode, ort_model, trie, vocab.level_starts, histories, full)
        print(f"  the same graphs with the whole level's logits (normalize=level, numpy head): "
              f"{len(histories) / t_level:.1f} users/s -> children-only head {t_level / t_ours:.1f}x", flush=True)

    if args.int8:
        import shutil
        import tempfile

        from genrec_model.evaluation.metrics import recall_ndcg_at_k
        from genrec_model.model.export import quantize_int8

        qdir = tempfile.mkdtemp(prefix="decode_bench_int8_")
        shutil.copytree(onnx_dir, qdir, dirs_exist_ok=True)
        quantize_int8(qdir)
        q_model = load_step_model(qdir, OrtConfig(intra_op_threads=cfg.threads, use_gpu=False))
        decode(q_model, trie, vocab.level_starts, histories[:4], ours_cfg)
        (q_items, q_scores), t_q = timed(decode, q_model, trie, vocab.level_starts, histories, ours_cfg)
        m32 = recall_ndcg_at_k(ours_items, targets, ks=(10,))
        m8 = recall_ndcg_at_k(q_items, targets, ks=(10,))
        print(f"int8 graphs: {len(histories) / t_q:.1f} users/s ({t_ours / t_q:.2f}x fp32); top-{cfg.top_k} identical "
              f"{identical_up_to_ties(ours_items, ours_scores, q_items, q_scores).mean():.3f}, mean overlap "
              f"{np.mean([len(set(a) & set(b)) / cfg.top_k for a, b in zip(ours_items, q_items)]):.3f}; test R@10 / N@10 "
              f"on these users fp32 {m32['recall@10']:.4f} / {m32['ndcg@10']:.4f}, int8 {m8['recall@10']:.4f} / "
              f"{m8['ndcg@10']:.4f} (unfiltered)", flush=True)

    hf = to_hf_gpt2(model)
    dict_trie = token_dict_trie(codes, vocab)
    token_to_item = {tuple(t): i for i, t in enumerate(item_tokens.tolist())}
    hist_hf = histories[: cfg.hf_users]
    user_model = model if model.cfg.item_query != "step" else None
    hf_decode(hf, hist_hf[:1], dict_trie, token_to_item, vocab, cfg, normalize, user_model)  # warm
    (hf_items, hf_scores), t_hf = timed(hf_decode, hf, hist_hf, dict_trie, token_to_item, vocab, cfg, normalize,
                                        user_model)
    hf_ups = len(hist_hf) / t_hf
    speedup = ups / hf_ups
    n = len(hist_hf)
    strict = float((ours_items[:n] == hf_items).all(axis=1).mean())
    same = float(identical_up_to_ties(ours_items[:n], ours_scores[:n], hf_items, hf_scores).mean())
    overlap = float(np.mean([len(set(a) & set(b)) / cfg.top_k for a, b in zip(ours_items, hf_items)]))
    gap = float(np.abs(ours_scores[:n] - hf_scores).max())
    print(f"hf generate (same scoring): {n} users in {t_hf:.2f} CPU s ({wall:.2f} wall s) -> {hf_ups:.2f} users/s; "
          f"ours {speedup:.1f}x; identical top-{cfg.top_k} lists {same:.3f} (order of exactly tied items aside; "
          f"{strict:.3f} position by position), mean overlap {overlap:.3f}, max |score difference| {gap:.1e}",
          flush=True)

    mc = manifest["model_config"]
    if normalize == "children":
        kids = [float(np.mean(np.diff(trie.indptr[d]))) for d in range(trie.n_levels)]
    else:
        kids = [float(s) for s in vocab.level_sizes]
    macs = macs_per_user(mc, mean_len, kids, cfg.beam)
    print(f"decode multiply-adds per user: {macs / 1e6:.2f} M (head columns per row and level "
          f"{[round(k, 1) for k in kids]} vs level sizes {list(vocab.level_sizes)}); "
          f"{macs * ups / 1e9:.2f} GMAC/s achieved", flush=True)

    if not args.skip_trie:
        rng = np.random.default_rng(cfg.seed)
        us_k, us_kl, us_d = trie_step_bench(cfg, rng)
        print(f"trie step, full decode per user at {cfg.trie_items} items: kernel {us_k:.1f} us, kernel + log-softmax "
              f"{us_kl:.1f} us, python dict trie {us_d:.1f} us -> {us_d / us_k:.0f}x", flush=True)
    print(f"speedup_vs_hf={speedup:.1f} top10_identical={same:.3f} users_per_s={ups:.1f}")


if __name__ == "__main__":
    main()
