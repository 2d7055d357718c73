"""Per-user histories as Parquet shards: the hand-off between Spark (which writes them,
`udfs/sequence_fns.write_history_shards`) and training processes (which read their share here).

Layout: `<dir>/shard=<k>/part-*.parquet`, rows (user_id string, items list<int64>: item indices, oldest
first); a user lives in exactly one shard, k = hash(user_id) mod shards, and a job writes one shard per
training process, so rank r reads shard r and nothing else.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

SHARD_COLUMN = "shard"


def read_history_shards(shard_dir: str, rank: int = 0, world: int = 1) -> tuple[list[str], list[np.ndarray]]:
    """(user ids, item-index histories) of the users in shard `rank` of `world`, sorted by user_id;
    world=1 reads every shard."""
    data = pads.dataset(shard_dir, format="parquet", partitioning="hive")
    if SHARD_COLUMN not in data.schema.names:
        raise ValueError(f"{shard_dir} is not a sharded history table (no {SHARD_COLUMN}=<k> folders)")
    # the shard numbers are in the file paths: no column to read for them
    shards = {int(path.split(f"{SHARD_COLUMN}=")[1].split("/")[0]) for path in data.files}
    if world > 1 and shards and max(shards) >= world:
        raise ValueError(f"{shard_dir} holds shards up to {max(shards)}, written for more than {world} processes")
    flt = None if world == 1 else pc.field(SHARD_COLUMN) == rank
    table = data.to_table(columns=["user_id", "items"], filter=flt)
    users = np.asarray(table.column("user_id").to_pylist(), dtype=object)
    col = table.column("items").combine_chunks() if table.num_rows else pa.array([], pa.list_(pa.int64()))
    offsets = col.offsets.to_numpy()
    values = col.values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    order = np.argsort(users, kind="stable")
    return ([str(u) for u in users[order]],
            [values[offsets[i]:offsets[i + 1]].copy() for i in order])
