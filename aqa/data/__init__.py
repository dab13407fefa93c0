"""Data: audio I/O, real codecs, codec shard building, grouped streaming dataset and the DataModule.

``AQADataModule`` is imported lazily so that data preparation does not pay for importing Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aqa.data.audio import load_audio, resample, to_mono
from aqa.data.codec_shards import build_codec_shards
from aqa.data.codecs import CODECS, encode_decode

if TYPE_CHECKING:
    from aqa.data.datamodule import AQADataModule
    from aqa.data.dataset import GroupedBatchDataset

__all__ = [
    "AQADataModule",
    "CODECS",
    "GroupedBatchDataset",
    "build_codec_shards",
    "encode_decode",
    "load_audio",
    "resample",
    "to_mono",
]


def __getattr__(name: str) -> Any:
    if name == "AQADataModule":
        from aqa.data.datamodule import AQADataModule

        return AQADataModule
    if name == "GroupedBatchDataset":
        from aqa.data.dataset import GroupedBatchDataset

        return GroupedBatchDataset
    raise AttributeError(f"module 'aqa.data' has no attribute {name!r}")
