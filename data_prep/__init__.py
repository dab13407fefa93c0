"""Every recipe that builds data, one module per ``aqa prep NAME`` (:data:`RECIPES`): ``codec`` (DeePAQ), ``jnd``
(JSQA), ``haaqi`` (HAAQI-Net), ``rated`` (``aqa prep import``: listening-test corpora and raw ratings),
``listening`` (a ViSQOL-scored codec test) and ``render`` (synthetic music and speech); each holds its builder
and its ``main(argv)``, built on :mod:`data_prep.recipe` (one error path, one end-of-run report). No recipe
imports another. Shared by them: :mod:`data_prep.shards` (deterministic, resumable shard jobs and manifests),
:mod:`data_prep.codecs` (ffmpeg codecs), :mod:`data_prep.corpora` (listening-test corpus readers) and
:mod:`data_prep.ratings` (raw per-listener ratings, screening)."""

# `aqa prep NAME ARGS...` -> the data_prep module whose `main(argv) -> int` runs the recipe; imported only
# when the recipe runs, so `aqa prep -h` and `aqa list` stay light
RECIPES: dict[str, str] = {
    "codec": "data_prep.codec",
    "jnd": "data_prep.jnd",
    "haaqi": "data_prep.haaqi",
    "import": "data_prep.rated",
    "render": "data_prep.render",
    "listening": "data_prep.listening",
}
