"""What training reads: :mod:`aqa.data.dataset` (grouped batches streamed from WebDataset shards),
:mod:`aqa.data.datamodule` (the Lightning DataModule) and :mod:`aqa.data.urls` (where shard paths point).

Building shards is :mod:`data_prep`'s job (``aqa prep NAME``); audio I/O is :mod:`aqa.audio`. Nothing is
imported here, so reading shard paths (``aqa.config``) does not pay for importing Lightning.
"""
