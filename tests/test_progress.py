"""Progress lines: done/total, rate and ETA from an injected clock."""
import logging

from jobs.common import Progress


def test_progress_rate_and_eta(caplog):
    now = [100.0]
    progress = Progress("recommend", "run_date", total=4, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="genrec"):
        now[0] = 102.0
        first = progress.advance(run_date="2024-01-01")
        now[0] = 108.0
        second = progress.advance(2, run_date="2024-01-03")
    assert (first["done"], first["rate"], first["eta_s"]) == (1, 0.5, 6.0)
    assert (second["done"], second["rate"], second["eta_s"]) == (3, 0.375, 1 / 0.375)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("stage=recommend event=progress step=run_date done=1 total=4 rate=0.5/s eta_s=6 "
                        "run_date=2024-01-01")
    assert "done=3 total=4" in lines[1] and "eta_s=2.7" in lines[1]


def test_progress_overshoot_and_zero_elapsed():
    progress = Progress("x", "step", total=1, clock=lambda: 5.0)
    snap = progress.advance(2)
    assert snap["done"] == 2 and snap["eta_s"] == 0.0 and snap["rate"] > 0
