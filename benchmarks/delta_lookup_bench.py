"""Single-user lookup on a recommendations-shaped Delta table, before and after Z-order by user_id.

Builds a >=1M-row table with the `recommendations` schema (synthetic users, 20 recs each, one
run_date/split/model partition) through DeltaStore (Spark writes `--files` files, each holding users
from the whole id range, as the recommend job's tasks do), copies it, Z-orders the copy with
`DeltaStore.optimize` (the same call the jobs make), then looks up single users with

- delta-rs: `DeltaTable.to_pyarrow_table(filters=[partition..., ("user_id", "=", u)])`
- DuckDB: `SELECT ... FROM delta_scan(path) WHERE ... AND user_id = ?` (duckdb-extension-delta,
  loaded from its file inside site-packages: nothing is downloaded)

and reports per engine: data files a lookup has to open (files whose user_id min/max in the Delta log
admit the user: what both readers prune by), bytes read (the process's read-syscall bytes around the
query, /proc/self/io rchar; includes the _delta_log reads), and median latency.

    python benchmarks/delta_lookup_bench.py --rows 1000000 --backend delta_rs --target-file-mb 8
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PART = {"run_date": "2026-11-24", "split": "serve", "model": "genrec"}
DAY = dt.date.fromisoformat(PART["run_date"])  # run_date is a DATE column (Arrow date32)


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def build(spark, store, n_rows: int, n_files: int):
    from pyspark.sql import functions as F

    from genrec_model.data.schemas import RECOMMENDATIONS

    df = (spark.range(n_rows).repartition(n_files)  # round-robin: every file spans the whole id range
          .select(F.format_string("u%08d", "id").alias("user_id"),
                  F.expr("transform(sequence(1, 20), i -> named_struct('item_id', concat('i', "
                         "cast(pmod(id * 31 + i * 7919, 12101) as string)), 'score', cast(-i as double) / 10, "
                         "'rank', i))").alias("recs"),
                  F.lit(False).alias("is_fallback"), F.lit("bench-model").alias("model_version"),
                  F.lit("cb-0").alias("codebook_version"), F.current_timestamp().alias("generated_at"),
                  F.lit(DAY).alias("run_date"), F.lit(PART["split"]).alias("split"),
                  F.lit(PART["model"]).alias("model")))
    return store.write(df, RECOMMENDATIONS, replace_partitions=[PART])


def files_admitting(path: str, user: str) -> tuple[int, int, int]:
    """(data files of the partition whose user_id stats admit `user`, data files of the partition, their bytes)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    adds = pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pandas()
    for k, v in PART.items():
        adds = adds[adds[f"partition.{k}"].astype(str) == v]
    hit = (adds["min.user_id"] <= user) & (adds["max.user_id"] >= user)
    return int(hit.sum()), len(adds), int(adds["size_bytes"].sum())


def lookup_delta_rs(path: str, users: list[str]) -> dict:
    from deltalake import DeltaTable

    table = DeltaTable(path)
    filters = [(k, "=", DAY if k == "run_date" else v) for k, v in PART.items()]  # pyarrow: no date = str
    lat, read = [], []
    for u in users:
        r0, t0 = _rchar(), time.perf_counter()
        got = table.to_pyarrow_table(filters=[*filters, ("user_id", "=", u)])
        lat.append(time.perf_counter() - t0)
        read.append(_rchar() - r0)
        assert got.num_rows == 1 and got.column("user_id")[0].as_py() == u, (u, got.num_rows)
    return {"latency_ms": 1000 * statistics.median(lat), "bytes": statistics.median(read)}


def duckdb_connection():
    import duckdb
    import duckdb_extension_delta

    ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "**", "delta.duckdb_extension"),
                    recursive=True)
    con = duckdb.connect()
    con.install_extension(ext[0])
    con.load_extension("delta")
    con.execute("SET threads = 2")
    return con


def lookup_duckdb(con, path: str, users: list[str]) -> dict:
    where = " AND ".join(f"{k} = '{v}'" for k, v in PART.items())
    sql = f"SELECT user_id, recs FROM delta_scan('{path}') WHERE {where} AND user_id = ?"
    lat, read = [], []
    for u in users:
        r0, t0 = _rchar(), time.perf_counter()
        rows = con.execute(sql, [u]).fetchall()
        lat.append(time.perf_counter() - t0)
        read.append(_rchar() - r0)
        assert len(rows) == 1 and rows[0][0] == u, (u, len(rows))
    return {"latency_ms": 1000 * statistics.median(lat), "bytes": statistics.median(read)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=16, help="files the (unclustered) write produces")
    ap.add_argument("--backend", choices=["native", "delta_rs"], default="delta_rs")
    ap.add_argument("--target-file-mb", type=float, default=0.5, help="OPTIMIZE target file size "
                    "(lakehouse.optimize_target_file_mb)")
    ap.add_argument("--row-group-mb", type=float, default=0.0, help="row groups of the optimized files "
                    "(lakehouse.optimize_row_group_mb; 0: writer default)")
    ap.add_argument("--lookups", type=int, default=15)
    ap.add_argument("--dir", default="/tmp/genrec-delta-lookup-bench")
    args = ap.parse_args()

    from genrec_model.config import SparkConfig
    from genrec_model.data.schemas import RECOMMENDATIONS
    from udfs.delta_store import DeltaStore
    from udfs.session import build_spark

    shutil.rmtree(args.dir, ignore_errors=True)
    spark = build_spark(SparkConfig(master="local[2]", shuffle_partitions=args.files, driver_memory="3g"), "bench")
    before = DeltaStore(spark, f"{args.dir}/before", delta_mode=args.backend)
    t0 = time.perf_counter()
    res = build(spark, before, args.rows, args.files)
    print(f"built {res.num_rows} rows in {res.num_files} files through {before.backend} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)
    shutil.copytree(before.root, f"{args.dir}/after")
    after = DeltaStore(spark, f"{args.dir}/after", delta_mode=args.backend)
    t0 = time.perf_counter()
    opt = after.optimize(RECOMMENDATIONS, zorder_by=["user_id"], partitions=[PART],
                         target_file_bytes=int(args.target_file_mb * 2**20),
                         row_group_bytes=int(args.row_group_mb * 2**20) or None)
    print(f"z-ordered by user_id through {after.backend}: {opt.files_removed} files -> {opt.files_added} "
          f"(target {args.target_file_mb} MB, row groups {args.row_group_mb} MB, "
          f"{time.perf_counter() - t0:.0f}s)", flush=True)
    spark.stop()

    rng = random.Random(0)
    users = [f"u{rng.randrange(args.rows):08d}" for _ in range(args.lookups)]
    con = duckdb_connection()
    results = {}
    for label, store in (("before", before), ("after", after)):
        path = store.path(RECOMMENDATIONS)
        opened = [files_admitting(path, u) for u in users]
        size = opened[0][2]  # the live files of the snapshot (replaced ones stay on disk until VACUUM)
        lookup_delta_rs(path, users[:2])  # warm-up (page cache, imports)
        lookup_duckdb(con, path, users[:2])
        results[label] = {"files": max(o[0] for o in opened), "of_files": opened[0][1], "table_bytes": size,
                          "delta_rs": lookup_delta_rs(path, users), "duckdb": lookup_duckdb(con, path, users)}
    print(f"\n{args.rows} rows, {args.lookups} single-user lookups (medians), table written by {args.backend}")
    print("| layout | data files in partition | files a lookup opens | engine | bytes read | latency ms |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        for engine in ("delta_rs", "duckdb"):
            print(f"| {label} | {r['of_files']} ({r['table_bytes'] / 2**20:.1f} MiB) | {r['files']} | {engine} | "
                  f"{r[engine]['bytes'] / 2**20:.2f} MiB | {r[engine]['latency_ms']:.1f} |")
    b, a = results["before"], results["after"]
    print(f"ratio before/after: files {b['files']}->{a['files']}, "
          f"delta-rs bytes {b['delta_rs']['bytes'] / max(a['delta_rs']['bytes'], 1):.1f}x "
          f"latency {b['delta_rs']['latency_ms'] / a['delta_rs']['latency_ms']:.1f}x, "
          f"duckdb bytes {b['duckdb']['bytes'] / max(a['duckdb']['bytes'], 1):.1f}x "
          f"latency {b['duckdb']['latency_ms'] / a['duckdb']['latency_ms']:.1f}x")


if __name__ == "__main__":
    main()
