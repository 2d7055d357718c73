"""How each stage's cost grows with users and items: Beauty resampled, the real jobs, one table.

    python benchmarks/scale_bench.py --conf conf/beauty.yaml --user-scales 1 10 --item-scales 1 [-- overrides]

Synthetic data in Beauty's own format (amazon_p5), seeded:
- users x S: S x 22,363 new user ids, each with the history of a real user drawn at random;
- items x C: every item plus C-1 copies whose titles are perturbed (a word dropped, a word from another
  title added); a user's history uses one copy index throughout, so histories stay real sequences.
Per item scale the item stages run once (ingest, embed, sids), then a small model is trained and exported
(untimed: it only gives recommend something to decode; training cost is the train job's samples/s per
process); per user scale: ingest, train data preparation (the history shards the trainer reads) and
recommend (split serve, every user). Item-side tables and artifacts are copied between user scales.
Every stage runs in its own driver process (a fresh Spark session), so memory is that stage's alone.
Per stage: wall seconds (the stage, not the session start), units/s, cost per unit relative to the
smallest scale of that stage, peak RSS of the driver's Python process, of the JVM (driver + executors in
local mode) and of the Spark Python workers (sum over concurrent workers), sampled every 0.2 s from /proc.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# the decode model for recommend: the shipped architecture, one short epoch (its speed, not its accuracy)
# (no judge re-rank: `genrec run judge` is its own stage; it cost the Beauty job ~5%, README)
MODEL_OVERRIDES = ["train.trainer.epochs=1", "train.valid_users=200", "train.trainer.progress=false",
                   "train.refit_for_serving=false", "recommend.serving.judge_weight=0.0"]
RESULT = "SCALE_BENCH_RESULT "


def read_beauty(path: str) -> tuple[list[list[str]], dict[str, str]]:
    with open(os.path.join(path, "user_sequence.txt")) as f:
        histories = [line.split()[1:] for line in f if line.strip()]
    titles = {}
    with open(os.path.join(path, "items_asin_title.tsv")) as f:
        next(f)
        for line in f:
            asin, _, title = line.rstrip("\n").partition("\t")
            titles[asin] = title
    return histories, titles


def perturbed_title(title: str, other: str, rng: np.random.Generator) -> str:
    words = html.unescape(title).split() or ["item"]
    if len(words) > 2:
        del words[int(rng.integers(len(words)))]
    extra = html.unescape(other).split() or ["new"]
    words.insert(int(rng.integers(len(words) + 1)), extra[int(rng.integers(len(extra)))])
    return " ".join(words)


def write_synthetic(src: str, out: str, user_scale: int, item_scale: int, seed: int) -> dict:
    """Beauty x (user_scale users, item_scale items) in amazon_p5 format under `out`; returns counts."""
    rng = np.random.default_rng(seed)
    histories, titles = read_beauty(src)
    asins = sorted(titles)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "items_asin_title.tsv"), "w") as f:
        f.write("asin\ttitle\n")
        for copy in range(item_scale):
            for a in asins:
                t = titles[a] if copy == 0 else perturbed_title(titles[a], titles[asins[rng.integers(len(asins))]], rng)
                f.write(f"{a if copy == 0 else f'{a}-{copy}'}\t{t.replace(chr(9), ' ')}\n")
    n_users = user_scale * len(histories)
    picks = rng.integers(0, len(histories), size=n_users)
    copies = rng.integers(0, item_scale, size=n_users)
    events = 0
    with open(os.path.join(out, "user_sequence.txt"), "w") as f:
        for u, (h, c) in enumerate(zip(picks, copies)):
            items = histories[h] if c == 0 else [f"{a}-{c}" for a in histories[h]]
            events += len(items)
            f.write(f"S{u:09d} {' '.join(items)}\n")
    return {"users": n_users, "items": item_scale * len(asins), "events": events}


class PeakRss:
    """Peak resident memory (MiB) of this process, its JVM children, and the Python processes under them."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root, self.interval = root, interval
        self.peaks, self._stop = {"driver_py": 0.0, "jvm": 0.0, "py_workers": 0.0}, None

    @staticmethod
    def _rss_mib(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    @staticmethod
    def _tree() -> dict[int, tuple[int, str]]:
        out = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                out[int(name)] = (ppid, cmd)
            except (OSError, ValueError, IndexError):
                continue
        return out

    def _sample(self) -> None:
        me = self.root
        tree = self._tree()
        jvms = [p for p, (pp, cmd) in tree.items() if pp == me and "java" in cmd]
        workers, frontier = [], list(jvms)
        while frontier:
            parent = frontier.pop()
            for p, (pp, cmd) in tree.items():
                if pp == parent:
                    frontier.append(p)
                    if "python" in cmd:
                        workers.append(p)
        now = {"driver_py": self._rss_mib(me), "jvm": sum(self._rss_mib(p) for p in jvms),
               "py_workers": sum(self._rss_mib(p) for p in workers)}
        for k, v in now.items():
            self.peaks[k] = max(self.peaks[k], v)

    def __enter__(self) -> "PeakRss":
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.is_set():
                self._sample()
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def run_stage(stage: str, conf: str, overrides: list[str], shard_dir: str) -> None:
    """Child process: one stage in a fresh Spark session; prints its wall seconds."""
    from genrec_model.config import load_config
    from jobs.common import make_context, run_recorded
    from jobs.stages import stage_runner
    from udfs.session import build_spark

    cfg = load_config(conf, overrides)
    spark = build_spark(cfg.spark, "scale_bench")
    t0 = time.perf_counter()
    if stage == "train_prep":
        _history_shards(cfg, spark, shard_dir)
    else:
        run_recorded(make_context(stage, cfg, spark), stage_runner(stage))
    wall = time.perf_counter() - t0
    spark.stop()
    print(RESULT + json.dumps({"wall_s": wall}), flush=True)


def main() -> None:
    from genrec_model.config import load_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", default="conf/beauty.yaml")
    ap.add_argument("--user-scales", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--item-scales", type=int, nargs="+", default=[1])
    ap.add_argument("--recommend-max-scale", type=int, default=10,
                    help="user scales above this skip recommend (decoding is per user: 1x and 10x give its slope)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="", help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--stage", default="", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--shard-dir", default="", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="config overrides for every stage, key=value")
    args = ap.parse_args()
    if args.stage:
        run_stage(args.stage, args.conf, args.overrides, args.shard_dir)
        return
    base = load_config(args.conf, args.overrides)
    work = args.work or tempfile.mkdtemp(prefix="scale_bench-")
    rows = []

    def child(stage, overrides, shard_dir=""):
        cmd = [sys.executable, os.path.abspath(__file__), "--conf", args.conf, "--stage", stage,
               "--shard-dir", shard_dir, "--", *overrides]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        with PeakRss(proc.pid) as mem:
            out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"{stage} failed (exit {proc.returncode}): {out[-2000:]}")
        result = [line for line in out.splitlines() if line.startswith(RESULT)]
        return json.loads(result[-1][len(RESULT):])["wall_s"], mem.peaks

    def timed(stage, scale, units, unit, overrides, shard_dir=""):
        wall, peaks = child(stage, overrides, shard_dir)
        rows.append({"stage": stage, "scale": scale, "units": units, "unit": unit, "wall_s": wall, **peaks})
        print(f"  {stage:<10} {scale:<10} {wall:8.1f} s  {units / wall:10.1f} {unit}/s  "
              f"driver {peaks['driver_py']:.0f} MiB  jvm {peaks['jvm']:.0f} MiB  "
              f"workers {peaks['py_workers']:.0f} MiB", flush=True)

    try:
        for c in args.item_scales:
            item_home = None
            for s in sorted(args.user_scales):
                tag = f"u{s}x-i{c}x"
                data = os.path.join(work, "data", tag)
                n = write_synthetic(base.data.path, data, s, c, args.seed)
                over = [*args.overrides, f"data.path={data}", "data.cold_item_share=0.0",
                        f"lakehouse.root={os.path.join(work, tag, 'lake')}",
                        f"artifacts.root={os.path.join(work, tag, 'art')}", "recommend.splits=[serve]",
                        *MODEL_OVERRIDES]
                timed("ingest", tag, n["events"], "events", over)
                if item_home is None:
                    timed("embed", tag, n["items"], "items", over)
                    timed("sids", tag, n["items"], "items", over)
                    for stage in ("train", "export"):
                        child(stage, over)
                    item_home = os.path.join(work, tag)
                else:  # item-side tables and the model do not depend on users
                    for sub in ("lake/item_embeddings", "lake/item_sids", "art"):
                        shutil.copytree(os.path.join(item_home, sub), os.path.join(work, tag, sub), dirs_exist_ok=True)
                timed("train_prep", tag, n["events"], "events", over, os.path.join(work, tag, "shards"))
                if s <= args.recommend_max_scale:
                    timed("recommend", tag, n["users"], "users", over)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


def _history_shards(cfg, spark, shard_dir: str) -> None:
    """The train job's data preparation alone: per-user histories as Parquet shards, counted in Spark."""
    from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_SIDS
    from jobs.common import make_context
    from udfs.sequence_fns import item_table, write_history_shards

    ctx = make_context("train", cfg, spark)
    items = item_table(ctx.read(ITEM_SIDS), ctx.read(CATALOG))
    write_history_shards(spark, ctx.read(INTERACTIONS), items, shard_dir, shards=cfg.train.distributed.num_processes)


def print_table(rows: list[dict]) -> None:
    first: dict[str, dict] = {}
    print(f"\n{'stage':<11}{'scale':<11}{'units':>11} {'unit':<7}{'wall s':>9}{'units/s':>11}{'cost/unit':>10}"
          f"{'driver py MiB':>14}{'jvm MiB':>9}{'workers MiB':>12}{'driver vs 1st':>14}")
    for r in rows:
        ref = first.setdefault(r["stage"], r)
        cost = (r["wall_s"] / r["units"]) / (ref["wall_s"] / ref["units"])
        print(f"{r['stage']:<11}{r['scale']:<11}{r['units']:>11,} {r['unit']:<7}{r['wall_s']:>9.1f}"
              f"{r['units'] / r['wall_s']:>11.1f}{cost:>10.2f}{r['driver_py']:>14.0f}{r['jvm']:>9.0f}"
              f"{r['py_workers']:>12.0f}{r['driver_py'] / max(ref['driver_py'], 1e-9):>14.2f}")
    print_fit(rows)


def print_fit(rows: list[dict]) -> None:
    """wall = fixed + marginal x units, least squares over each stage's scales: what a 100x night costs is
    the marginal term (per-unit cost at 1x is mostly the stage's fixed start-up on data this small)."""
    print(f"\n{'stage':<11}{'unit':<7}{'fixed s':>9}{'marginal ms/unit':>18}{'marginal units/s':>18}")
    for stage in dict.fromkeys(r["stage"] for r in rows):
        pts = [(r["units"], r["wall_s"]) for r in rows if r["stage"] == stage]
        if len({u for u, _ in pts}) < 2:
            continue
        slope, fixed = np.polyfit([u for u, _ in pts], [w for _, w in pts], 1)
        unit = next(r["unit"] for r in rows if r["stage"] == stage)
        print(f"{stage:<11}{unit:<7}{fixed:>9.1f}{slope * 1e3:>18.4f}{1 / slope if slope > 0 else float('inf'):>18.1f}")


if __name__ == "__main__":
    main()
