"""The baselines job under the cold-start protocol: popularity and SASRec learn from no interaction with a
withheld item, content-knn recommends it from its text alone."""
import datetime as dt

import numpy as np
import pytest
from deltalake import DeltaTable

import genrec_model.baselines.sasrec_train as sasrec_train
from genrec_model.config import load_config
from genrec_model.data.schemas import CATALOG, INTERACTIONS, ITEM_EMBEDDINGS, RECOMMENDATIONS
from genrec_model.data.splits import cold_item_mask
from jobs.baselines import run as run_baselines
from jobs.common import make_context, run_recorded
from udfs.delta_store import spark_schema

pytestmark = pytest.mark.spark

ITEMS = [f"i{j}" for j in range(8)]  # cold_seed=0, share 0.2 withholds i0 alone
# i0 is the most frequent item of the training prefixes: any leak would put it first in popularity
HISTORIES = {"u0": ["i0", "i2", "i3", "i4"], "u1": ["i0", "i5", "i6", "i7"], "u2": ["i0", "i3", "i5", "i2"],
             "u3": ["i1", "i4", "i6", "i0"],  # test target: the cold item
             "u4": ["i2", "i3", "i1", "i5"], "u5": ["i6", "i7", "i2", "i1"],
             "u6": ["i0", "i2"]}              # test history holds the cold item only
EMB = {"i0": [0.1, 1.0], "i1": [1.0, 0.0], "i2": [1.0, 0.2], "i3": [0.8, 0.6], "i4": [0.6, 0.8],
       "i5": [-1.0, 0.1], "i6": [0.0, 1.0], "i7": [-0.5, -1.0]}


def test_baselines_never_learn_from_cold_items(spark, tmp_path, monkeypatch):
    assert cold_item_mask(ITEMS, 0.2, 0).tolist() == [True] + [False] * 7
    cfg = load_config(None, ["data.dataset=mini", "data.path=/unused", f"lakehouse.root={tmp_path / 'lake'}",
                             f"artifacts.root={tmp_path / 'art'}", "run_date=2024-06-01",
                             "data.cold_item_share=0.2", "data.cold_seed=0",
                             "baselines.models=[popularity, sasrec, content_knn, transition]", "baselines.content_knn.n_recent=1",
                             "baselines.sasrec.d_model=8", "baselines.sasrec.n_head=2", "baselines.sasrec.d_ff=16",
                             "baselines.sasrec_train.max_epochs=2", "recommend.serving.top_k=5",
                             "recommend.serving.filter_seen=true", "recommend.splits=[test, valid]"])
    ctx = make_context("baselines", cfg, spark)
    now = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    inter = [(u, i, None, p, None) for u, items in HISTORIES.items() for p, i in enumerate(items)]
    ctx.store.write(spark.createDataFrame(inter, spark_schema(INTERACTIONS)), INTERACTIONS)
    ctx.store.write(spark.createDataFrame([(i, i, None, [], None, None, "h") for i in ITEMS], spark_schema(CATALOG)),
                    CATALOG)
    ctx.store.write(spark.createDataFrame([(i, v, "mini-encoder", "h", "t", now) for i, v in EMB.items()],
                                          spark_schema(ITEM_EMBEDDINGS)), ITEM_EMBEDDINGS)
    seen_by_sasrec = []
    real_train = sasrec_train.train_sasrec

    def spy(train, valid, *args, **kwargs):
        seen_by_sasrec.extend(np.asarray(s).tolist() for s in train)
        seen_by_sasrec.extend([*e.history.tolist(), e.target] for e in valid)
        return real_train(train, valid, *args, **kwargs)

    monkeypatch.setattr(sasrec_train, "train_sasrec", spy)
    run_recorded(ctx, run_baselines)

    # item index 0 is i0 (catalog sorted by item_id): SASRec's training and early stopping never saw it
    assert seen_by_sasrec and not any(0 in s for s in seen_by_sasrec)
    assert ctx.counts["cold_items"] == 1 and ctx.counts["cold_train_events_dropped"] == 4
    assert ctx.counts["sasrec_epochs"] == 2 and ctx.counts["sasrec_train_cpu_seconds"] > 0
    assert ctx.counts["sasrec_max_len"] == 50
    recs = DeltaTable(ctx.store.path(RECOMMENDATIONS)).to_pandas()
    test = recs[recs["split"] == "test"].set_index(["model", "user_id"])
    items = {key: [r["item_id"] for r in lst] for key, lst in test["recs"].items()}
    # counts without i0: i2 2, i3 2, i1 i4 i5 i6 i7 1, i0 0; u3 has seen i1 i4 i6
    assert items[("popularity", "u3")] == ["i2", "i3", "i5", "i7", "i0"]
    # content-knn: u3's last item i6 is closest to the new item i0, which no interaction taught anyone
    assert items[("content_knn", "u3")][0] == "i0"
    # u6's test history is the cold item only: SASRec has no input, the user gets the popularity list
    assert bool(test.loc[("sasrec", "u6"), "is_fallback"]) and items[("sasrec", "u6")] == ["i2", "i3", "i1", "i4", "i5"]
    assert not test.loc["sasrec"].drop(index="u6")["is_fallback"].any()
    assert ctx.counts["sasrec_test_fallback_users"] == 1
    # transition (test histories without i0): i6 -> i7 (u5), i6 -> i2 at distance 2, i4 -> i6, i1 -> i4, i6; seen
    # items removed, then the popularity order fills the list, where the never-counted i0 comes last
    assert items[("transition", "u3")] == ["i7", "i2", "i3", "i5", "i0"]
    assert bool(test.loc[("transition", "u3"), "is_fallback"])
    assert ctx.counts["transition_test_pairs"] > 0 and ctx.counts["transition_valid_pairs"] > 0
    assert set(recs["model"]) == {"popularity", "sasrec", "content_knn", "transition"}
    assert set(recs["split"]) == {"test", "valid"}
