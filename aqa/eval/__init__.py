"""Evaluation: listening-test statistics (``stats``), result tables and plots (``report``), listening tests
(``listening``: ``aqa eval --test``), rating scales (``scales``), FAD (``fad``), and what the
``aqa eval | calibrate | ensemble | score`` commands do with runs (``runs``).

Scoring itself (the engine, ``aqa.load``'s scorer, ensembles, export, calibration, device and precision) is
:mod:`aqa.inference`, one layer down; the correlations are :mod:`aqa.correlation`."""
