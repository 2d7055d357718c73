"""The SIDs' collaborative signal never learns from a withheld (cold) item's interactions."""
import pytest

from genrec_model.config import load_config
from genrec_model.data.schemas import INTERACTIONS
from genrec_model.data.splits import cold_item_mask
from jobs.sids import _train_collab
from udfs.delta_store import spark_schema

pytestmark = pytest.mark.spark

ITEMS = [f"i{j}" for j in range(8)]  # cold_seed=0, share 0.2 withholds i0 alone
HISTORIES = {"u0": ["i0", "i1", "i2", "i3", "x", "x"], "u1": ["i1", "i0", "i4", "i5", "x", "x"],
             "u2": ["i2", "i3", "i6", "i7", "x", "x"], "u3": ["i4", "i5", "i6", "i0", "x", "x"]}


class _Ctx:
    def __init__(self, cfg, df):
        self.cfg, self._df = cfg, df

    def read(self, spec):
        assert spec is INTERACTIONS
        return self._df


def test_collab_vectors_without_cold_items(spark):
    assert cold_item_mask(ITEMS, 0.2, 0).tolist() == [True] + [False] * 7
    rows = [(u, i, None, p, None) for u, h in HISTORIES.items() for p, i in enumerate(h)]
    df = spark.createDataFrame(rows, spark_schema(INTERACTIONS))
    base = ["data.dataset=mini", "data.path=/unused", "sids.collab.enabled=true", "sids.collab.dim=2",
            "sids.collab.window=1", "sids.collab.holdout_last=2"]
    warm = _train_collab(_Ctx(load_config(None, [*base, "data.cold_item_share=0.2"]), df),
                         load_config(None, base).sids)
    assert "i0" not in warm  # no co-occurrence with the cold item is counted: it gets no vector
    assert set(warm) == {"i1", "i2", "i3", "i4", "i5", "i6", "i7"}
    everything = _train_collab(_Ctx(load_config(None, base), df), load_config(None, base).sids)
    assert "i0" in everything  # the same data without the protocol does learn it
