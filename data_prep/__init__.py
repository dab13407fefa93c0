"""Every recipe that builds data, one module per ``aqa prep NAME``: ``codec`` (DeePAQ), ``jnd`` (JSQA),
``haaqi`` (HAAQI-Net), ``rated`` (``aqa prep import``: listening-test corpora) and ``render`` (synthetic
music and speech); each holds its builder and its ``main(argv)``. Shared by them: :mod:`data_prep.shards`
(deterministic, resumable shard jobs and manifests), :mod:`data_prep.codecs` (ffmpeg codecs) and
:mod:`data_prep.corpora` (listening-test corpus readers)."""
