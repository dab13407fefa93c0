"""Thin command-line entry points that build training data with :mod:`aqa.data` (``python -m data_prep.codec``)."""
