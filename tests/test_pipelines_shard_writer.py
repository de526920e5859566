"""ShardWriter gathers blocks into row groups and loses or reorders no row."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from pipelines.engine.outputs import ShardWriter, shard_table


def _block(start: int, n: int):
    rng = np.random.default_rng(start)
    ids = [f"n00000001/{i:05d}.jpg" for i in range(start, start + n)]
    return shard_table(ids, np.arange(start, start + n) % 7, None, {"msp": rng.random(n)}, store_logits=False,
                       pred=np.arange(start, start + n) % 5)


def test_blocks_become_few_row_groups_in_order(tmp_path) -> None:
    blocks = [_block(start, 37) for start in range(0, 37 * 20, 37)]
    big = ShardWriter(tmp_path / "big.parquet")
    small = ShardWriter(tmp_path / "small.parquet", row_group_bytes=blocks[0].nbytes * 3)
    for block in blocks:
        big.write(block)
        small.write(block)
    big.commit()
    small.commit()
    assert pq.ParquetFile(tmp_path / "big.parquet").metadata.num_row_groups == 1
    # a row group is written once ≥ 3 blocks are pending: 20 blocks -> 6 groups of 3 and one of 2
    assert pq.ParquetFile(tmp_path / "small.parquet").metadata.num_row_groups == 7
    expected = [row for block in blocks for row in block.to_pylist()]
    assert pq.read_table(tmp_path / "big.parquet").to_pylist() == expected
    assert pq.read_table(tmp_path / "small.parquet").to_pylist() == expected
    assert big.rows == small.rows == 37 * 20
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_abort_leaves_nothing(tmp_path) -> None:
    writer = ShardWriter(tmp_path / "x.parquet", row_group_bytes=1)
    writer.write(_block(0, 5))
    writer.write(_block(5, 5))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
