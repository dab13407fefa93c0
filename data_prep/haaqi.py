"""Build HAAQI-Net shards: ``aqa prep haaqi --src MUSIC --out OUT``.

Music excerpts (mono, 24 kHz) x processings (clean, real codec, low-pass, noise) x sampled listeners
(Bisgaard-based 8-value audiogram at 250-8000 Hz), each labelled with HAAQI from pyclarity at 65 dB SPL
(``--spl``: one level, a list for the SPL-robustness study, or a range); see :mod:`data_prep.haaqi` for the
sampling. ``--src`` is a folder (recursive) or a ``.csv``/``.txt`` list (``path[,split]``). Samples
``{piece}-{excerpt}-{processing}-{k}`` (plus ``-spl{level}`` when several levels are listed) hold ``.flac`` and
``.json`` (``audiogram, audiogram_profile, level_db, processing, haaqi, group, ...``).
HAAQI costs ~1.5x real time per sample on one core: budget ``excerpts x processings x audiograms x levels x
excerpt_s x 1.5`` CPU-seconds. Example (the demo set)::

    aqa prep haaqi --src data_prep/lists/demo_music.csv --root ../shared/data/clean \\
        --out data/haaqi_demo --excerpt-s 2 --max-excerpts 1 --processings clean,codec,noise --audiograms 2 --jobs 2

HAAQI-Net training data: music x processing x sampled hearing loss, labelled with pyclarity's HAAQI.

A source file is a *piece*; it is cut into excerpts of ``excerpt_s`` seconds (mono, ``sample_rate`` Hz,
24 kHz by default: the rate of HAAQI's ear model). Each excerpt is one *group*: for every processing in
``processings`` one version is made with drawn parameters, and for each version ``audiograms_per_version``
listeners (8-value audiograms) are drawn; every (version, listener, level) is a sample labelled with HAAQI
(clean excerpt as reference, presented at that level).

Processings:

- ``clean``: the excerpt itself (HAAQI < 1 under hearing loss: the impaired ear is compared with a normal one).
- ``codec``: a real codec (:func:`data_prep.codecs.encode_decode`): Opus/MP3/AAC at 16..128 kbps.
- ``lowpass``: 8th-order Butterworth low-pass, cut-off log-uniform in 1-10 kHz (below Nyquist).
- ``noise``: pink-ish noise (1st-order filtered white) at an SNR uniform in 0-30 dB.

Audiograms: a profile is drawn from normal hearing (``NH``) and the Bisgaard et al. (2010) standard audiograms
(:data:`BISGAARD`: flat/moderately sloping ``N1``-``N7``, steep ``S1``-``S3``), read at the clarity
frequencies 250, 500, 1k, 2k, 3k, 4k, 6k, 8k Hz (8 kHz takes the 6 kHz value: the standard defines no
8 kHz threshold), shifted by a common offset N(0, 3 dB) plus per-frequency N(0, 3 dB), rounded to 1 dB and
clipped to -10..120 dB HL. The default excludes ``N7`` (profound) to span normal to severe loss.

Presentation level (``--spl``, :func:`parse_spl`), the level of the clean reference in dB SPL (HAAQI's
``level1``). HAAQI-Net never sees it, so training labels come from one fixed level: 65 dB SPL by default, the
reference SPL at which Wisnu et al. (2025) find HAAQI-Net best (and the level of the Cadenza baselines). For
their SPL-robustness study:

- ``--spl 55,65,75``: every (version, listener) is labelled at each listed level, one sample per level
  (key suffix ``-spl55``; an experiment with ``report.by: level_db`` reports the correlation per level);
- ``--spl 55:75``: one level per listener, drawn uniform in 55-75 dB SPL (the earlier default; a data
  augmentation that makes the label noisy for a model that cannot hear the level).

A single level (``--spl 60``) also makes a set paired with the default one: levels are drawn after the
audiogram, so the same seed gives the same audio and listeners at any fixed level. ``level_db`` is kept in
every sample's metadata.

Everything random is drawn from ``sha1(seed, piece, excerpt, ...)`` streams, so samples do not depend on
job counts, shard splits or interruptions.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import butter, lfilter, sosfiltfilt

from aqa import metrics  # the module: tests replace metrics.compute_arrays with a fast stand-in
from aqa.audio import encode_flac, load_audio, resample_np, to_mono_np
from aqa.metrics import MetricError
from data_prep.codecs import CODECS, encode_decode
from data_prep.recipe import report, run_main
from data_prep.shards import (
    Sample,
    Skip,
    SourceInfo,
    add_common_args,
    assign_split,
    audio_problem,
    list_sources,
    plan_shards,
    run_shards,
    safe_id,
    short_error,
)

__all__ = [
    "AUDIOGRAM_FREQUENCIES",
    "DEFAULT_SPL_DB",
    "BISGAARD",
    "BISGAARD_FREQUENCIES",
    "PROCESSINGS",
    "HaaqiConfig",
    "parse_spl",
    "sample_audiogram",
    "process",
    "build_piece",
]

AUDIOGRAM_FREQUENCIES = (250, 500, 1000, 2000, 3000, 4000, 6000, 8000)
BISGAARD_FREQUENCIES = (250, 375, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000)
# Bisgaard, Vlaming & Dahlquist (2010), Trends in Amplification 14(2): standard audiograms, dB HL at
# BISGAARD_FREQUENCIES. N = flat and moderately sloping, S = steep sloping.
BISGAARD: dict[str, tuple[float, ...]] = {
    "N1": (10, 10, 10, 10, 10, 10, 15, 20, 30, 40),
    "N2": (20, 20, 20, 22.5, 25, 30, 35, 40, 45, 50),
    "N3": (35, 35, 35, 35, 40, 45, 50, 55, 60, 65),
    "N4": (55, 55, 55, 55, 55, 60, 65, 70, 75, 80),
    "N5": (65, 67.5, 70, 72.5, 75, 80, 80, 80, 80, 80),
    "N6": (75, 77.5, 80, 82.5, 85, 90, 90, 95, 100, 100),
    "N7": (90, 92.5, 95, 100, 105, 105, 105, 105, 105, 105),
    "S1": (10, 10, 10, 10, 10, 10, 15, 30, 55, 70),
    "S2": (20, 20, 20, 22.5, 25, 35, 55, 75, 95, 95),
    "S3": (30, 30, 35, 47.5, 60, 70, 75, 80, 80, 85),
}
DEFAULT_PROFILES = ("NH", "N1", "N2", "N3", "N4", "N5", "N6", "S1", "S2", "S3")
PROCESSINGS = ("clean", "codec", "lowpass", "noise")
CODEC_BITRATES = (16, 32, 48, 64, 80, 96, 128)
# Presentation level of the labels, dB SPL: HAAQI-Net's best reference SPL (Wisnu et al. 2025, SPL study).
DEFAULT_SPL_DB = 65.0


def profile_levels(name: str) -> np.ndarray:
    """The 8 clarity-frequency hearing levels (dB HL) of profile ``name`` (``NH`` or a Bisgaard name)."""
    if name == "NH":
        return np.zeros(len(AUDIOGRAM_FREQUENCIES))
    if name not in BISGAARD:
        raise KeyError(f"unknown hearing-loss profile {name!r}; choose from NH, {', '.join(BISGAARD)}")
    table = dict(zip(BISGAARD_FREQUENCIES, BISGAARD[name], strict=True))
    table[8000] = table[6000]
    return np.array([table[f] for f in AUDIOGRAM_FREQUENCIES], dtype=np.float64)


def sample_audiogram(rng: random.Random, profiles: Sequence[str] = DEFAULT_PROFILES, jitter_db: float = 3.0) -> tuple[str, list[float]]:
    """Draw ``(profile, 8 hearing levels in dB HL)``: a profile plus common and per-frequency jitter."""
    name = rng.choice(list(profiles))
    offset = rng.gauss(0.0, jitter_db)
    levels = [float(np.clip(round(v + offset + rng.gauss(0.0, jitter_db)), -10, 120)) for v in profile_levels(name)]
    return name, levels


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    return lfilter([1.0], [1.0, -0.9], rng.standard_normal(n))


def process(x: np.ndarray, sr: int, kind: str, rng: random.Random) -> tuple[np.ndarray, dict[str, Any]]:
    """Make one processed version of mono audio ``x`` (``(T,)`` at ``sr`` Hz) with drawn parameters.

    Returns:
        ``(y (T,) float32, description)``; the description is stored as ``processing`` in the json.
    """
    if kind == "clean":
        return x.astype(np.float32), {"kind": "clean"}
    if kind == "codec":
        codec = rng.choice(list(CODECS))
        kbps = rng.choice(CODEC_BITRATES)
        return encode_decode(x, sr, codec, kbps).astype(np.float32), {"kind": "codec", "codec": codec, "bitrate_kbps": kbps}
    if kind == "lowpass":
        hi = min(10000.0, 0.45 * sr)
        cutoff = float(round(np.exp(rng.uniform(np.log(1000.0), np.log(hi))), 1))
        sos = butter(8, cutoff, btype="low", fs=sr, output="sos")
        return sosfiltfilt(sos, x).astype(np.float32), {"kind": "lowpass", "cutoff_hz": cutoff}
    if kind == "noise":
        snr = round(rng.uniform(0.0, 30.0), 2)
        noise = _pink(x.size, np.random.default_rng(rng.getrandbits(32)))
        gain = np.sqrt(np.mean(x.astype(np.float64) ** 2) / (np.mean(noise**2) + 1e-20) / 10 ** (snr / 10))
        y = x + gain * noise
        peak = float(np.max(np.abs(y)))
        if peak > 0.99:  # keep it within full scale; the SNR is unchanged by a common gain
            y = y * (0.99 / peak)
        return y.astype(np.float32), {"kind": "noise", "snr_db": snr, "noise": "pink"}
    raise KeyError(f"unknown processing {kind!r}; choose from {list(PROCESSINGS)}")


def parse_spl(text: str) -> tuple[tuple[float, ...], tuple[float, float] | None]:
    """Read ``--spl``: ``"65"`` (one level), ``"55,65,75"`` (each level), or ``"55:75"`` (uniform draw).

    Returns:
        ``(levels, None)`` for a level or a list (every sample labelled at each), or ``((), (lo, hi))`` for a
        range (one level per listener drawn uniform in it). Levels are in dB SPL, finite, in (0, 130].

    Raises:
        ValueError: not numbers, a level outside (0, 130], repeated levels or ``lo >= hi``.
    """
    text = str(text).strip()
    try:
        if ":" in text:
            lo_s, hi_s = text.split(":")
            values = [float(lo_s), float(hi_s)]
        else:
            values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--spl must be a level, a comma list or MIN:MAX in dB SPL (e.g. 65, 55,65,75 or "
                         f"55:75), got {text!r}") from None
    if not values or any(not np.isfinite(v) or not 0 < v <= 130 for v in values):
        raise ValueError(f"--spl levels must be numbers in (0, 130] dB SPL, got {text!r}")
    if ":" in text:
        if values[0] >= values[1]:
            raise ValueError(f"--spl MIN:MAX needs MIN < MAX, got {text!r} (one level: --spl {values[0]:g})")
        return (), (values[0], values[1])
    if len({_spl_tag(v) for v in values}) != len(values):  # the tags name the samples: they must differ
        raise ValueError(f"--spl lists a level twice: {text!r}")
    return tuple(values), None


def _spl_tag(level: float) -> str:
    return "spl" + f"{level:g}".replace(".", "p")


@dataclass(frozen=True)
class HaaqiConfig:
    """Settings of the HAAQI recipe (all JSON-serialisable; see the module docstring).

    ``levels_db``: every (version, listener) is labelled at each of these levels (dB SPL); with
    ``level_range_db`` set instead (and ``levels_db`` empty) one level per listener is drawn uniform in it.
    """

    excerpt_s: float = 10.0
    max_excerpts: int | None = None
    sample_rate: int = 24000
    processings: tuple[str, ...] = PROCESSINGS
    audiograms_per_version: int = 2
    profiles: tuple[str, ...] = DEFAULT_PROFILES
    levels_db: tuple[float, ...] = (DEFAULT_SPL_DB,)
    level_range_db: tuple[float, float] | None = None
    seed: int = 0
    silence_db: float = -50.0

    def __post_init__(self) -> None:
        if bool(self.levels_db) == (self.level_range_db is not None):
            raise ValueError("HaaqiConfig needs either levels_db (each level) or level_range_db (one drawn level)")


def _rng(cfg: HaaqiConfig, *parts: Any) -> random.Random:
    return random.Random(int(hashlib.sha1(":".join(map(str, (cfg.seed, *parts))).encode()).hexdigest()[:16], 16))


def build_piece(path: str, cfg: HaaqiConfig, piece: str | None = None) -> Iterator[list[Sample] | Skip | SourceInfo]:
    """Turn one music file into HAAQI-labelled groups (one per excerpt), yielding skips for bad input.

    Args:
        path: audio file.
        cfg: recipe settings.
        piece: piece id (default: the file stem, key-safe).
    """
    pid = piece or safe_id(Path(path).stem.split(".")[0], 40)
    try:
        x, sr = load_audio(path)
    except Exception as exc:
        yield Skip(path, f"cannot load: {short_error(exc)}")
        return
    x = resample_np(to_mono_np(x), sr, cfg.sample_rate)
    sr = cfg.sample_rate
    n = int(round(cfg.excerpt_s * sr))
    if (why := audio_problem(x, sr, min_s=cfg.excerpt_s, silence_db=None)) is not None:
        yield Skip(path, why)
        return
    slots = [i for i in range(x.size // n) if audio_problem(x[i * n : (i + 1) * n], sr, silence_db=cfg.silence_db) is None]
    if not slots:
        yield Skip(path, f"silent: every excerpt below {cfg.silence_db:g} dBFS RMS")
        return
    if cfg.max_excerpts is not None and len(slots) > cfg.max_excerpts:
        slots = [slots[i] for i in np.linspace(0, len(slots) - 1, cfg.max_excerpts).round().astype(int)]
    yield SourceInfo(path, {"piece": pid, "duration_s": round(x.size / sr, 3), "excerpts": slots})
    for i in slots:
        ref = x[i * n : (i + 1) * n].astype(np.float32)
        group = f"{pid}-{i:04d}"
        samples: list[Sample] = []
        try:
            for kind in cfg.processings:
                y, desc = process(ref, sr, kind, _rng(cfg, pid, i, kind, "process"))
                flac = encode_flac(y, sr)
                for k in range(cfg.audiograms_per_version):
                    lrng = _rng(cfg, pid, i, kind, "listener", k)
                    profile, levels = sample_audiogram(lrng, cfg.profiles)
                    if cfg.level_range_db is not None:  # drawn after the audiogram: fixed levels keep the listeners
                        spls = [round(lrng.uniform(*cfg.level_range_db), 2)]
                    else:
                        spls = list(cfg.levels_db)
                    for level in spls:
                        score = metrics.compute_arrays("haaqi", ref, sr, y, sr, audiogram=levels, level_db=level)
                        meta = {
                            "piece": pid,
                            "group": group,
                            "excerpt": i,
                            "start_s": round(i * cfg.excerpt_s, 6),
                            "processing": desc,
                            "processing_kind": kind,
                            "is_reference": kind == "clean",
                            "audiogram": levels,
                            "audiogram_frequencies": list(AUDIOGRAM_FREQUENCIES),
                            "audiogram_profile": profile,
                            "level_db": level,
                            "haaqi": round(float(score["haaqi"]), 6),
                            "sample_rate": sr,
                            "source": path,
                        }
                        key = f"{group}-{kind}-{k}" + (f"-{_spl_tag(level)}" if len(spls) > 1 else "")
                        samples.append(Sample(key=key, fields={"flac": flac}, meta=meta, duration_s=cfg.excerpt_s,
                                              source=path))
        except (MetricError, RuntimeError, ValueError) as exc:
            yield Skip(path, f"excerpt {i}: {short_error(exc)}", {"excerpt": i})
            continue
        yield samples


# --------------------------------------------------------------------------------------------------------
# Command line: `aqa prep`


def _build(path: str, cfg: HaaqiConfig):  # noqa: ANN202  (module-level so the pool can pickle it)
    return build_piece(path, cfg)


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the HAAQI shard builder."""
    p = argparse.ArgumentParser(prog="aqa prep haaqi", description="Music x processing x sampled hearing loss, "
                                "labelled with HAAQI (pyclarity), as WebDataset shards plus manifest.json.")
    add_common_args(p, units_per_shard=4, unit="source files")
    p.add_argument("--excerpt-s", type=float, default=10.0, help="excerpt length in seconds (default 10)")
    p.add_argument("--max-excerpts", type=int, default=None, help="max excerpts per piece (spread evenly)")
    p.add_argument("--sample-rate", type=int, default=24000, help="working and stored rate in Hz (default 24000)")
    p.add_argument("--processings", default=",".join(PROCESSINGS), help=f"comma list of {','.join(PROCESSINGS)}")
    p.add_argument("--audiograms", type=int, default=2, help="listeners drawn per processed version (default 2)")
    p.add_argument("--profiles", default=",".join(DEFAULT_PROFILES), help="hearing-loss profiles to draw from "
                   "(NH, Bisgaard N1-N7, S1-S3; default NH,N1-N6,S1-S3)")
    p.add_argument("--spl", default=f"{DEFAULT_SPL_DB:g}", metavar="DB",
                   help="presentation level of the reference in dB SPL for the HAAQI labels (default "
                   f"{DEFAULT_SPL_DB:g}, HAAQI-Net's best reference SPL). A comma list (55,65,75) labels every "
                   "sample at each level (SPL-robustness study); MIN:MAX (55:75) draws one level per listener")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the builder; returns 0 on success, 1 when nothing was written, 2 on bad input."""
    return run_main("aqa prep haaqi", build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    procs = tuple(t.strip() for t in args.processings.split(",") if t.strip())
    profiles = tuple(t.strip() for t in args.profiles.split(",") if t.strip())
    if not procs or any(t not in PROCESSINGS for t in procs):
        raise ValueError(f"--processings must name some of {list(PROCESSINGS)}, got {args.processings!r}")
    if args.excerpt_s <= 0 or args.audiograms < 1:
        raise ValueError("need --excerpt-s > 0 and --audiograms >= 1")
    levels_db, level_range_db = parse_spl(args.spl)
    for name in profiles:
        profile_levels(name)
    cfg = HaaqiConfig(
        excerpt_s=args.excerpt_s,
        max_excerpts=args.max_excerpts,
        sample_rate=args.sample_rate,
        processings=procs,
        audiograms_per_version=args.audiograms,
        profiles=profiles,
        levels_db=levels_db,
        level_range_db=level_range_db,
        seed=args.seed,
    )
    sources, splits = list_sources(args.src, args.root)
    keyed = {safe_id(p.stem.split(".")[0], 40): str(p) for p in sources}
    if len(keyed) != len(sources):
        raise ValueError("two sources share a file stem; rename one (the stem is the piece id)")
    split_of = {k: splits.get(v) or assign_split(k, args.val_fraction, args.seed) for k, v in keyed.items()}
    plans = plan_shards(list(keyed.values()), key=lambda v: safe_id(Path(v).stem.split(".")[0], 40),
                        split_of=lambda v: split_of[safe_id(Path(v).stem.split(".")[0], 40)],
                        shard_id=args.shard_id, num_shards=args.num_shards, units_per_shard=args.units_per_shard)
    config = {**cfg.__dict__, "val_fraction": args.val_fraction, "src": str(args.src)}
    start = time.perf_counter()
    manifest = run_shards(
        plans, partial(_build, cfg=cfg), args.out, config=config, recipe="haaqi", shard_id=args.shard_id,
        num_shards=args.num_shards, jobs=args.jobs, label_keys=("haaqi", "level_db"),
        extra={"sample_fields": {"flac": "16-bit FLAC, mono", "json": "piece, group, excerpt, start_s, processing, "
                                 "processing_kind, is_reference, audiogram, audiogram_frequencies, "
                                 "audiogram_profile, level_db, haaqi, sample_rate, source"}},
        progress=not args.no_progress,
    )
    expected = ("train", "val") if not splits and args.val_fraction > 0 else ()
    return report(
        manifest, args.out, time.perf_counter() - start, expected=expected, prog="aqa prep haaqi", unit="excerpts"
    )


if __name__ == "__main__":
    sys.exit(main())
