"""Inference: scoring audio with a trained model, without Lightning and without :mod:`aqa.eval`.

- ``device``: where and in which precision a model runs (``--device``, ``--precision``), resolved once by the
  caller and passed down;
- ``engine``: the batched scoring engine (padded batches, windows, references, one record per file);
- ``calibration``: score -> label mappings (``aqa calibrate``);
- ``ensemble``: ensembles of runs (``ensemble.yaml``, MMMOS' selection, shared encoders);
- ``scorer``: loading a run, an exported model or an ensemble, and :class:`~aqa.inference.scorer.Scorer`, the
  Python API behind ``aqa.load``;
- ``export``: ``aqa export`` (a self-contained model folder).

Nothing is imported here: ``import aqa.inference.scorer`` loads only what scoring needs."""
