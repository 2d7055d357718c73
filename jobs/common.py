"""What every job shares: argument parsing, the session, the Delta store, and the run record.

A job module defines `run(ctx: JobContext) -> None` and ends with
`if __name__ == "__main__": main_for(__name__ ...)` so it works under both
`genrec run STAGE` and `spark-submit jobs/STAGE.py`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa

from genrec_model.config import GenrecConfig, load_config
from genrec_model.config_loader import ConfigError
from genrec_model.data.schemas import JOB_RUNS, TABLES, TableSpec, run_date_value

log = logging.getLogger("genrec")


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("py4j", "numba", "urllib3", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_event(stage: str, event: str, **fields) -> None:
    """One structured line: `stage=ingest event=counts catalog=12101 ...` (easy to grep and parse)."""
    parts = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
    log.info("stage=%s event=%s %s", stage, event, parts)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(v)
    return f'"{text}"' if " " in text else text


class Progress:
    """Driver-side progress of a loop: `stage=recommend event=progress step=run_date done=3 total=10
    rate=0.5/s eta_s=14 item=2024-01-03`, one line per `advance`."""

    def __init__(self, stage: str, step: str, total: int, clock=time.perf_counter):
        self.stage, self.step, self.total, self.done = stage, step, total, 0
        self._clock = clock
        self._t0 = clock()

    def advance(self, n: int = 1, **fields) -> dict[str, float]:
        self.done += n
        elapsed = max(self._clock() - self._t0, 1e-9)
        rate = self.done / elapsed
        eta = max(self.total - self.done, 0) / rate if rate > 0 else float("inf")
        snapshot = {"done": self.done, "total": self.total, "rate": rate, "eta_s": eta, "elapsed_s": elapsed}
        log_event(self.stage, "progress", step=self.step, done=self.done, total=self.total,
                  rate=f"{rate:.3g}/s", eta_s=round(eta, 1), **fields)
        return snapshot


def parse_args(argv: list[str], prog: str) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(prog=prog, description="genrec job; key=value pairs override the config")
    parser.add_argument("--conf", required=True, help="YAML config, e.g. conf/local.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. run_date=2024-01-01")
    args = parser.parse_args(argv)
    return args.conf, args.overrides


@dataclass
class JobContext:
    """One run of one job: config, session, store, and what the run read, wrote and counted."""

    job: str
    cfg: GenrecConfig
    spark: object
    store: object
    run_id: str
    run_date: str
    inputs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    migrated: set[str] = field(default_factory=set)  # tables brought to the declared schema in this run

    @property
    def run_day(self):
        """`run_date` as the value of the tables' run_date columns (a `datetime.date`)."""
        return run_date_value(self.run_date)

    def read(self, spec: TableSpec, version: int | None = None):
        df, version = self.store.read(spec, version)
        self.inputs[spec.name] = version
        return df

    def migrate(self, spec: TableSpec) -> dict[str, int]:
        """Bring an existing table to its declared schema (udfs/table_migrations.py), once per run: every
        write of a job goes through here first. Counts land in `migrated.<table>.<what>`."""
        if spec.name in self.migrated:
            return {}
        from udfs.table_migrations import migrate_table

        done = migrate_table(self.store, spec, self.metadata())
        self.migrated.add(spec.name)
        for what, n in done.items():
            self.counts[f"migrated.{spec.name}.{what}"] = n
            log_event(self.job, "migrated", table=spec.name, migration=what, n=n)
        return done

    def write(self, df, spec: TableSpec, **kwargs):
        self.migrate(spec)
        meta = {"genrec.run_id": self.run_id, "genrec.job": self.job, "genrec.run_date": self.run_date,
                "genrec.config_hash": self.cfg.config_hash(), **kwargs.pop("metadata", {})}
        result = self.store.write(df, spec, metadata=meta, **kwargs)
        self.outputs[spec.name] = result.version
        zorder = self.cfg.lakehouse.zorder.get(spec.name)
        if zorder:  # cluster what was just written for its readers (e.g. one user's list at a time)
            lake = self.cfg.lakehouse
            opt = self.store.optimize(spec, zorder_by=zorder, partitions=kwargs.get("replace_partitions"),
                                      target_file_bytes=int(lake.optimize_target_file_mb * 2**20),
                                      row_group_bytes=int(lake.optimize_row_group_mb * 2**20)
                                      if lake.optimize_row_group_mb else None)
            log_event(self.job, "optimized", table=spec.name, zorder_by=",".join(zorder), version=opt.version,
                      files_removed=opt.files_removed, files_added=opt.files_added)
        return result

    def vacuum_outputs(self) -> None:
        """The retention policy: VACUUM every table this run wrote (maintenance: logged, never fatal)."""
        retention = self.cfg.lakehouse.vacuum_retention_hours
        if retention is None:
            return
        for name in [n for n in self.outputs if n in TABLES]:
            try:
                res = self.store.vacuum(TABLES[name], retention)
                self.counts[f"vacuum.{name}.files_deleted"] = res.files_deleted
            except Exception as e:  # noqa: BLE001 - the run's data is committed; the next run retries
                log.error("vacuum of %s failed: %s", name, e)

    def metadata(self) -> dict[str, str]:
        return {"genrec.run_id": self.run_id, "genrec.job": self.job, "genrec.config_hash": self.cfg.config_hash()}


def make_context(job: str, cfg: GenrecConfig, spark=None, run_date: str | None = None) -> JobContext:
    from udfs.delta_store import DeltaStore
    from udfs.session import build_spark

    spark = spark or build_spark(cfg.spark, job)
    store = DeltaStore(spark, cfg.lakehouse_root(), cfg.lakehouse.delta_mode, cfg.lakehouse.storage_options, cfg.lakehouse.commit_retries)
    run_id = cfg.run_id or f"{job}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return JobContext(job, cfg, spark, store, run_id, run_date or cfg.effective_run_date())


def run_recorded(ctx: JobContext, body) -> None:
    """Run `body(ctx)` and append one row to `job_runs`, whether it succeeded or failed."""
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    status, error = "succeeded", None
    log_event(ctx.job, "start", run_id=ctx.run_id, run_date=ctx.run_date, config_hash=ctx.cfg.config_hash(),
              delta_path="native" if ctx.store.native else "delta-rs")
    try:
        body(ctx)
        ctx.vacuum_outputs()
    except BaseException as e:
        status, error = "failed", f"{type(e).__name__}: {e}"[:2000]
        raise
    finally:
        seconds = time.perf_counter() - t0
        try:  # before the row is built, so this run's row counts the migration too
            ctx.migrate(JOB_RUNS)
        except Exception as e:  # noqa: BLE001 - the append below then fails and is logged as well
            log.error("could not migrate job_runs: %s", e)
        row = pa.Table.from_pylist([{
            "run_id": ctx.run_id, "job": ctx.job, "run_date": ctx.run_day, "dataset": ctx.cfg.data.dataset,
            "config_hash": ctx.cfg.config_hash(), "status": status, "started_at": started, "seconds": seconds,
            "inputs": list(ctx.inputs.items()), "outputs": list(ctx.outputs.items()),
            "counts": [(k, float(v)) for k, v in ctx.counts.items()], "error": error}], schema=JOB_RUNS.schema)
        try:
            ctx.store.append_rows(JOB_RUNS, row, metadata=ctx.metadata())
        except Exception as e:  # the audit row must never mask the job's own outcome
            log.error("could not record the run in job_runs: %s", e)
        log_event(ctx.job, "end", status=status, seconds=round(seconds, 2), **ctx.counts)


def main_for(job: str, body, argv: list[str] | None = None) -> int:
    """Entry point shared by `spark-submit jobs/<job>.py` and `genrec run <job>`."""
    setup_logging()
    conf, overrides = parse_args(sys.argv[1:] if argv is None else argv, f"genrec run {job}")
    try:
        cfg = load_config(conf, overrides)
    except ConfigError as e:
        print(f"genrec: config error: {e}", file=sys.stderr)
        return 2
    ctx = make_context(job, cfg)
    run_recorded(ctx, body)
    return 0
