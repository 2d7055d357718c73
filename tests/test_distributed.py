"""Data-parallel training without Spark: two gloo ranks on CPU, each with its own share of the users."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from genrec_model.data.history_shards import read_history_shards
from genrec_model.model.config import DistributedConfig, FitConfig, TrainConfig
from genrec_model.model.distributed import Ranks
from genrec_model.model.fit import fit_generator
from tests.test_fit import N_ITEMS, _cfg, _data


def _rank_main(rank: int, world: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world)
    try:
        seqs, codes, _ = _data()
        share = seqs[rank::world]
        fitted = fit_generator(share, codes, [3, N_ITEMS], [""] * N_ITEMS, _cfg("free", refit=True),
                               out_dir=os.path.join(tmp, "model"), ranks=Ranks(rank, world))
        torch.save({"state": fitted.model.state_dict(), "serving": fitted.serving_model.state_dict(),
                    "result": fitted.result}, os.path.join(tmp, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_stay_in_sync_and_learn(tmp_path):
    mp.spawn(_rank_main, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    for key in ("state", "serving"):  # gradients averaged every step: the replicas never drift apart
        for name, value in r0[key].items():
            assert torch.equal(value, r1[key][name]), (key, name)
    res0, res1 = r0["result"], r1["result"]
    drop_clock = [[{k: v for k, v in row.items() if k != "minutes"} for row in r.history] for r in (res0, res1)]
    assert drop_clock[0] == drop_clock[1]  # validation reduced over ranks: same metrics, same decisions
    assert res0.processes == 2 and res0.best_epoch == res1.best_epoch
    assert res0.best_metrics["recall@10"] > 0.75  # as one process on every user (test_fit)
    single = fit_generator(*_data()[:2], [3, N_ITEMS], [""] * N_ITEMS, _cfg("free")).result
    # each rank ran half the global batch: about the sequences per epoch of one process (less what the
    # larger share loses to the common step count)
    per_epoch = res0.samples / len(res0.history), single.samples / len(single.history)
    assert 0.9 * per_epoch[1] <= per_epoch[0] <= per_epoch[1], per_epoch
    assert sorted(os.listdir(tmp_path / "model")) == ["best.pt", "curves.png", "history.json"]  # rank 0 only


def test_batch_must_split_evenly_over_processes():
    with pytest.raises(ValueError, match="multiple of train.distributed.num_processes"):
        FitConfig(trainer=TrainConfig(batch_size=255), distributed=DistributedConfig(num_processes=2))
    with pytest.raises(ValueError, match="num_processes must be >= 1"):
        DistributedConfig(num_processes=0)


def test_history_shards_split_users_between_ranks(tmp_path):
    for shard, users in ((0, ["b", "a"]), (1, ["c"])):
        part = tmp_path / f"shard={shard}"
        part.mkdir()
        table = pa.table({"user_id": users, "items": pa.array([[int(ord(u))] * 2 for u in users], pa.list_(pa.int64()))})
        pq.write_table(table, part / "part-0.parquet")
    users, seqs = read_history_shards(str(tmp_path))
    assert users == ["a", "b", "c"] and [s.tolist() for s in seqs] == [[97, 97], [98, 98], [99, 99]]
    assert read_history_shards(str(tmp_path), 0, 2)[0] == ["a", "b"]
    assert read_history_shards(str(tmp_path), 1, 2)[0] == ["c"]
    assert seqs[0].dtype == np.int64
    (tmp_path / "shard=2").mkdir()
    pq.write_table(pa.table({"user_id": ["d"], "items": pa.array([[1]], pa.list_(pa.int64()))}),
                   tmp_path / "shard=2" / "part-0.parquet")
    with pytest.raises(ValueError, match="written for more than 2 processes"):
        read_history_shards(str(tmp_path), 0, 2)
