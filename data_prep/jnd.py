"""Build JSQA JND pairs: ``aqa prep jnd --src SPEECH_DIR_OR_LIST --out OUT [options]``.

Clean speech (``--src``: folder or .csv/.txt list, as for ``aqa prep codec``) is mixed with noise at every
SNR of a grid (default -5..40 dB in 1 dB steps); each (utterance, noise) is a group of mixtures plus the
clean reference, and pairs of mixtures are "same" when their SNRs differ by less than ``--jnd-db``
(default 3 dB, the speech-to-noise-ratio JND of McShefferty et al. 2015). Noise comes from real recordings
in ``--noise-dir`` (a folder or a .txt/.csv list; JSQA uses the CHiME-3 background recordings) and is generated
(``--noise-types white,pink,babble``) only when no recordings are given. See :mod:`data_prep.jnd`. Examples::

    aqa prep jnd --src LibriSpeech/train-clean-100 --noise-dir chime3_backgrounds_ch1.txt --out data/jnd --jobs 8
    aqa prep jnd --src ../shared/data/clean/speech --out data/jnd_demo --snr-step 2.5 --jobs 2   # generated noise

Build JSQA-style JND data: clean speech mixed with noise on an SNR grid, with same/different pairs.

Each speech file is an *utterance* and a work unit of :mod:`data_prep.shards` (deterministic job split,
resumable shards, manifests). For each utterance, ``noises_per_utterance`` noises are drawn
(deterministically from ``seed`` and the utterance id) from the noise pool; each (utterance, noise) is a
*group*: the clean utterance (reference) followed by one mixture per SNR of the grid, written whole and
consecutively. ``utterances_per_shard`` utterances make one shard, so shards are grouped by utterance and
a split never shares an utterance.

Noise pool: real noise recordings, the audio files under ``noise_dir`` (a folder, recursive, or a ``.txt``/
``.csv`` list as for ``--src``), each resampled to ``sample_rate``, averaged to mono, looped and cut at a seeded
random offset; a noise's id is its file stem (made unique in the pool). JSQA (Fan & Williamson 2025) pretrains
on clean LibriSpeech utterances mixed with the background noise of CHiME-3 (Barker et al. 2015, "The third
'CHiME' speech separation and recognition challenge": recordings in four environments, bus, cafe, pedestrian
area and street junction, made with a six-microphone tablet array). That corpus is not bundled here:
point ``noise_dir`` at its background recordings, at one channel only (CHiME-3 stores one WAV per array
channel; a ``.txt`` list of the ``*.CH1.wav`` files keeps a recording from being drawn as six noises). Only
without ``noise_dir`` are noises generated, those named in ``noise_types``:

- ``white``: Gaussian white noise.
- ``pink``: 1/f noise (white noise shaped by ``1/sqrt(f)`` in the frequency domain).
- ``babble``: babble-like noise made from the utterance itself: the sum of ``6`` time-reversed copies
  of it, each circularly shifted by a random amount. Reversal removes intelligibility, the sum of
  shifted talkers gives babble's speech-shaped spectrum and modulation, and the unit needs no other
  file (so every shard depends only on its own utterances).

Mixing: the noise is scaled so that ``10 log10(P_speech / P_noise) = snr_db`` with ``P`` the mean power
over the utterance (plain RMS, not the P.56 active level); every mixture (and the clean reference) is
then normalised to ``level_dbfs`` RMS (default -26 dBFS) and scaled down only if it would clip, so the
level does not reveal the SNR.

Pairs and the JND: two mixtures of the same group form a pair; it is labelled *same* (1) when
``|snr_a - snr_b| < jnd_db`` and *different* (0) otherwise. The default ``jnd_db = 3`` dB is the mean
just-noticeable difference in speech-to-noise ratio measured by McShefferty, Whitmer & Akeroyd (2015,
"The just-noticeable difference in speech-to-noise ratio", Trends in Hearing 19,
doi:10.1177/2331216515572316): ~3 dB for sentences in noise, independent of hearing ability. Only pairs
with ``|snr_a - snr_b| <= max_pair_gap_db`` are listed (default 10 dB: the informative pairs near the
threshold; any pair can be rebuilt from ``snr_db`` with :func:`jnd_pairs`).

Sample layout::

    {utt}-{noise}-clean.flac / .json         the reference: is_reference true, snr_db null, "pairs"
    {utt}-{noise}-snr{m|p}{|snr| x 10:04d}    e.g. ``-snrm0050`` = -5.0 dB, ``-snrp0125`` = 12.5 dB

JSON fields: ``utterance, noise, noise_type, group, snr_db, snr_index, jnd_db, is_reference,
sample_rate, duration_s, source, noise_source``; the reference also holds ``pairs``: a list of
``[key_a, key_b, same, delta_db]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aqa.audio import encode_flac, load_audio, resample_np, to_mono_np
from aqa.files import numbered
from data_prep.recipe import report, run_main
from data_prep.shards import (
    Sample,
    Skip,
    SourceInfo,
    SourceUnit,
    add_common_args,
    audio_problem,
    list_sources,
    plan_shards,
    run_shards,
    safe_id,
    short_error,
    source_units,
)

__all__ = ["NOISE_TYPES", "build_jnd_shards", "jnd_pairs", "snr_grid", "mix_at_snr", "make_noise", "snr_key"]

NOISE_TYPES: tuple[str, ...] = ("white", "pink", "babble")
LABEL_KEYS = ("snr_db", "snr_index")
_BABBLE_TALKERS = 6


def snr_grid(lo: float = -5.0, hi: float = 40.0, step: float = 1.0) -> list[float]:
    """SNRs from ``lo`` to ``hi`` (inclusive when on the grid) every ``step`` dB, rounded to 0.1 dB."""
    if step <= 0 or hi < lo:
        raise ValueError(f"need step > 0 and hi >= lo, got {lo}..{hi} step {step}")
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    return [round(lo + i * step, 1) for i in range(n)]


def snr_key(snr_db: float) -> str:
    """Key-safe SNR tag: ``-5.0 -> "snrm0050"``, ``12.5 -> "snrp0125"``."""
    tenth = int(round(snr_db * 10))
    return f"snr{'m' if tenth < 0 else 'p'}{abs(tenth):04d}"


def jnd_pairs(
    snrs: Sequence[float], jnd_db: float = 3.0, max_gap_db: float | None = None
) -> list[tuple[int, int, int, float]]:
    """All pairs ``(i, j, same, delta_db)`` with ``i < j`` of a group's SNRs.

    Args:
        snrs: SNR (dB) of each mixture.
        jnd_db: pairs closer than this are "same" (1), others "different" (0).
        max_gap_db: keep only pairs with ``|delta| <= max_gap_db``; ``None`` keeps all.
    """
    out = []
    for i in range(len(snrs)):
        for j in range(i + 1, len(snrs)):
            d = round(abs(float(snrs[i]) - float(snrs[j])), 6)
            if max_gap_db is None or d <= max_gap_db + 1e-9:
                out.append((i, j, int(d < jnd_db - 1e-9), d))
    return out


def _rng(*parts: Any) -> np.random.Generator:
    digest = hashlib.sha1(":".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def make_noise(kind: str, n: int, rng: np.random.Generator, speech: np.ndarray | None = None) -> np.ndarray:
    """Generate ``n`` samples of ``white``, ``pink`` or ``babble`` noise (float64, unit RMS).

    Args:
        kind: one of :data:`NOISE_TYPES`.
        n: length in samples.
        rng: random generator (seeded by the caller).
        speech: ``(n,)`` utterance the babble is made from (required for ``babble``).
    """
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / np.sqrt(f), n)
    elif kind == "babble":
        if speech is None or speech.size != n:
            raise ValueError("babble noise needs the utterance (same length) it is made from")
        rev = speech[::-1].astype(np.float64)
        x = sum(np.roll(rev, int(s)) for s in rng.integers(0, n, size=_BABBLE_TALKERS))
    else:
        raise ValueError(
            f"unknown noise type {kind!r}; choose from {list(NOISE_TYPES)} or give a noise folder"
        )
    x = x - x.mean()
    rms = np.sqrt(np.mean(x**2))
    return x / rms if rms > 0 else x


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + g * noise`` with ``g`` chosen so that the power ratio is ``snr_db`` dB (both ``(T,)``)."""
    ps = float(np.mean(np.square(speech, dtype=np.float64)))
    pn = float(np.mean(np.square(noise, dtype=np.float64)))
    if ps <= 0 or pn <= 0:
        raise ValueError("speech and noise must both have non-zero power")
    g = np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return speech.astype(np.float64) + g * noise.astype(np.float64)


def _normalise(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(x)))
    y = x * (10 ** (level_dbfs / 20) / rms) if rms > 0 else x
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.astype(np.float32)


@dataclass(frozen=True)
class _Config:
    snrs: tuple[float, ...]
    jnd_db: float
    max_pair_gap_db: float | None
    noise_pool: tuple[str, ...]  # file paths or generated type names
    noise_ids: tuple[str, ...]  # key-safe id of each pool entry (unique)
    noise_files: bool
    noises_per_utterance: int
    sample_rate: int
    min_s: float
    max_s: float
    level_dbfs: float
    include_clean: bool
    silence_db: float
    seed: int


@functools.lru_cache(maxsize=8)
def _load_noise(path: str, sr: int) -> np.ndarray:
    x, nsr = load_audio(path)
    return resample_np(to_mono_np(x), nsr, sr).astype(np.float64)


def _noise_for(cfg: _Config, name: str, n: int, rng: np.random.Generator, speech: np.ndarray) -> np.ndarray:
    if not cfg.noise_files:
        return make_noise(name, n, rng, speech)
    x = _load_noise(name, cfg.sample_rate)
    if audio_problem(x, cfg.sample_rate, silence_db=cfg.silence_db) is not None:
        raise ValueError(
            f"noise file {name} is {audio_problem(x, cfg.sample_rate, silence_db=cfg.silence_db)}"
        )
    start = int(rng.integers(0, x.size))
    reps = int(np.ceil((start + n) / x.size))
    return np.tile(x, reps)[start : start + n]


def _build_utterance(utt: SourceUnit, cfg: _Config) -> Iterator[list[Sample] | Skip | SourceInfo]:
    try:
        x, sr = load_audio(utt.source)
    except Exception as exc:
        yield Skip(utt.source, f"cannot load: {short_error(exc)}", {"utterance": utt.name})
        return
    speech = resample_np(to_mono_np(x), sr, cfg.sample_rate).astype(np.float64)
    why = audio_problem(speech, cfg.sample_rate, min_s=cfg.min_s, silence_db=cfg.silence_db)
    if why is not None:
        yield Skip(utt.source, why, {"utterance": utt.name})
        return
    speech = speech[: int(round(cfg.max_s * cfg.sample_rate))]
    n = speech.size
    dur = n / cfg.sample_rate
    rng = _rng(cfg.seed, utt.name)
    k = min(cfg.noises_per_utterance, len(cfg.noise_pool))
    picks = sorted(rng.choice(len(cfg.noise_pool), size=k, replace=False).tolist())
    names = [cfg.noise_pool[i] for i in picks]
    yield SourceInfo(
        utt.source,
        {"utterance": utt.name, "split": utt.split, "duration_s": round(dur, 3), "noises": names},
    )
    for name, noise_id in ((cfg.noise_pool[i], cfg.noise_ids[i]) for i in picks):
        group = f"{utt.name}-{noise_id}"
        try:
            noise = _noise_for(cfg, name, n, _rng(cfg.seed, utt.name, name), speech)
        except Exception as exc:
            yield Skip(name, f"noise failed: {short_error(exc)}", {"utterance": utt.name})
            continue
        base = {
            "utterance": utt.name,
            "noise": noise_id,
            "noise_type": "file" if cfg.noise_files else name,
            "noise_source": name if cfg.noise_files else None,
            "group": group,
            "jnd_db": cfg.jnd_db,
            "sample_rate": cfg.sample_rate,
            "duration_s": round(dur, 6),
            "source": utt.source,
        }
        samples: list[Sample] = []
        keys = [f"{group}-{snr_key(s)}" for s in cfg.snrs]
        if cfg.include_clean:
            pairs = [
                [keys[i], keys[j], same, d]
                for i, j, same, d in jnd_pairs(cfg.snrs, cfg.jnd_db, cfg.max_pair_gap_db)
            ]
            meta = {**base, "snr_db": None, "snr_index": len(cfg.snrs), "is_reference": True, "pairs": pairs}
            flac = encode_flac(_normalise(speech, cfg.level_dbfs), cfg.sample_rate)
            samples.append(Sample(f"{group}-clean", {"flac": flac}, meta, dur, utt.source))
        for idx, (snr, key) in enumerate(zip(cfg.snrs, keys, strict=True)):
            mix = _normalise(mix_at_snr(speech, noise, snr), cfg.level_dbfs)
            meta = {**base, "snr_db": snr, "snr_index": idx, "is_reference": False}
            samples.append(Sample(key, {"flac": encode_flac(mix, cfg.sample_rate)}, meta, dur, utt.source))
        yield samples


def build_jnd_shards(
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    noise_dir: str | os.PathLike | None = None,
    noise_types: Sequence[str] = NOISE_TYPES,
    noises_per_utterance: int = 1,
    snrs: Sequence[float] | None = None,
    jnd_db: float = 3.0,
    max_pair_gap_db: float | None = 10.0,
    sample_rate: int = 16000,
    min_s: float = 1.0,
    max_s: float = 10.0,
    level_dbfs: float = -26.0,
    include_clean: bool = True,
    val_fraction: float = 0.2,
    splits: Mapping[str, str] | None = None,
    utterances_per_shard: int = 16,
    shard_id: int = 0,
    num_shards: int = 1,
    jobs: int = 1,
    seed: int = 0,
    silence_db: float = -60.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Mix utterances with noise on an SNR grid and write grouped, resumable WebDataset shards.

    Args:
        sources: clean speech files (one utterance each); every job must get the same list.
        out_dir: output folder (shards, per-job manifests, ``manifest.json``).
        noise_dir: noise recordings, a folder (recursive) or ``.txt``/``.csv`` list (JSQA: the CHiME-3
            backgrounds); ``None`` generates ``noise_types``.
        noise_types: generated noises, subset of :data:`NOISE_TYPES` (ignored with ``noise_dir``).
        noises_per_utterance: noises (groups) per utterance, drawn without replacement.
        snrs: SNR grid in dB; default :func:`snr_grid` ``(-5, 40, 1)``.
        jnd_db: SNR difference below which a pair is "same" (default 3 dB, see the module docstring).
        max_pair_gap_db: list only pairs at most this far apart; ``None`` lists all.
        sample_rate: stored rate in Hz (mono).
        min_s: shorter utterances are skipped ("too short").
        max_s: longer utterances are cut to their first ``max_s`` seconds.
        level_dbfs: RMS level of every stored clip.
        include_clean: store the clean utterance as the group's reference.
        val_fraction: share of utterances hashed into ``"val"``.
        splits: explicit ``utterance -> split`` (keys: id, path, file name or stem).
        utterances_per_shard: utterances (work units) per shard.
        shard_id: this job's index.
        num_shards: number of jobs.
        jobs: worker processes; the output is identical for any value.
        seed: seed of noise choice/offsets/generation and of the split hash.
        silence_db: silent utterances/noises (RMS below this, dBFS) are skipped.
        progress: tqdm bar on stderr.

    Returns:
        The merged manifest once all jobs are done, else this job's manifest.
    """
    grid = tuple(float(s) for s in (snr_grid() if snrs is None else snrs))
    if not grid or len(set(grid)) != len(grid):
        raise ValueError(f"snrs must be distinct numbers, got {list(grid)}")
    grid = tuple(sorted(grid))
    if jnd_db <= 0 or noises_per_utterance < 1 or sample_rate <= 0 or max_s < min_s:
        raise ValueError("need jnd_db > 0, noises_per_utterance >= 1, sample_rate > 0 and max_s >= min_s")
    if noise_dir is not None:
        pool = tuple(str(p) for p in list_sources(noise_dir)[0])
        noise_ids = tuple(numbered(safe_id(Path(p).stem, 24) for p in pool))
    else:
        pool = tuple(noise_types)
        bad = [t for t in pool if t not in NOISE_TYPES]
        if not pool or bad or len(set(pool)) != len(pool):
            raise ValueError(f"noise_types must be distinct names from {list(NOISE_TYPES)}, got {list(pool)}")
        noise_ids = pool
    units = source_units(sources, splits, val_fraction, seed, max_len=40)
    cfg = _Config(
        grid,
        float(jnd_db),
        max_pair_gap_db,
        pool,
        noise_ids,
        noise_dir is not None,
        noises_per_utterance,
        int(sample_rate),
        float(min_s),
        float(max_s),
        float(level_dbfs),
        include_clean,
        float(silence_db),
        seed,
    )
    config = {
        "snrs_db": list(grid),
        "jnd_db": float(jnd_db),
        "max_pair_gap_db": max_pair_gap_db,
        "noise_dir": None if noise_dir is None else str(noise_dir),
        "noise_pool": list(pool),
        "noises_per_utterance": noises_per_utterance,
        "sample_rate": int(sample_rate),
        "min_s": min_s,
        "max_s": max_s,
        "level_dbfs": level_dbfs,
        "include_clean": include_clean,
        "val_fraction": val_fraction,
        "explicit_splits": bool(splits),
        "utterances_per_shard": utterances_per_shard,
        "seed": seed,
        "silence_db": silence_db,
    }
    plans = plan_shards(
        units,
        key=lambda u: u.name,
        split_of=lambda u: u.split,
        shard_id=shard_id,
        num_shards=num_shards,
        units_per_shard=utterances_per_shard,
    )
    extra = {
        "sample_fields": {
            "flac": "16-bit FLAC, mono",
            "json": "utterance, noise, noise_type, group, snr_db, snr_index, jnd_db, is_reference, "
            "sample_rate, duration_s, source, noise_source; the reference also: pairs "
            "[[key_a, key_b, same, delta_db], ...]",
        },
        "versions_per_group": len(grid) + int(include_clean),
        "jnd_reference": "McShefferty, Whitmer & Akeroyd (2015), Trends in Hearing 19, "
        "doi:10.1177/2331216515572316: mean SNR JND ~3 dB",
    }
    return run_shards(
        plans,
        functools.partial(_build_utterance, cfg=cfg),
        out_dir,
        config=config,
        recipe="jnd",
        shard_id=shard_id,
        num_shards=num_shards,
        jobs=jobs,
        label_keys=LABEL_KEYS,
        extra=extra,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------------------
# Command line: `aqa prep`


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the JND pair builder."""
    p = argparse.ArgumentParser(
        prog="aqa prep jnd",
        description="Mix clean speech with noise on an SNR grid and write JND-pair WebDataset shards. JSQA "
        "(Fan & Williamson 2025) mixes clean LibriSpeech utterances with the CHiME-3 background recordings "
        "(bus, cafe, pedestrian area, street junction; not bundled): give them with --noise-dir. "
        "Without --noise-dir the noise is generated (--noise-types).",
    )
    add_common_args(p, units_per_shard=16, unit="utterances")
    p.add_argument(
        "--noise-dir",
        type=Path,
        default=None,
        help="real noise recordings: a folder (recursive) or a .txt/.csv list of audio files, e.g. the CHiME-3 "
        "backgrounds (one channel: list the *.CH1.wav files), as in the JSQA paper (default: generated noise)",
    )
    p.add_argument(
        "--noise-types",
        default=None,
        help="generated noises, only without --noise-dir: subset of white,pink,babble (default: all three)",
    )
    p.add_argument(
        "--noises-per-utterance", type=int, default=1, help="noise groups per utterance (default 1)"
    )
    p.add_argument("--snr-min", type=float, default=-5.0, help="lowest SNR in dB (default -5)")
    p.add_argument("--snr-max", type=float, default=40.0, help="highest SNR in dB (default 40)")
    p.add_argument("--snr-step", type=float, default=1.0, help="SNR grid step in dB (default 1)")
    p.add_argument(
        "--jnd-db", type=float, default=3.0, help="pairs closer than this are 'same' (default 3 dB)"
    )
    p.add_argument("--max-pair-gap-db", type=float, default=10.0, help="list pairs at most this far apart")
    p.add_argument("--sample-rate", type=int, default=16000, help="stored rate in Hz (default 16000)")
    p.add_argument("--min-s", type=float, default=1.0, help="skip utterances shorter than this (s)")
    p.add_argument("--max-s", type=float, default=10.0, help="cut utterances to this length (s)")
    p.add_argument("--level-dbfs", type=float, default=-26.0, help="RMS level of every stored clip")
    p.add_argument("--no-clean", action="store_true", help="do not store the clean reference")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the builder; 0 on success, 1 when nothing was written, 2 on bad input."""
    return run_main("aqa prep jnd", build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    if args.noise_dir is not None and args.noise_types is not None:
        raise ValueError("--noise-types names generated noises; with --noise-dir the noise is the recordings")
    sources, splits = list_sources(args.src, args.root)
    start = time.perf_counter()
    manifest = build_jnd_shards(
        sources,
        args.out,
        noise_dir=args.noise_dir,
        noise_types=[t.strip() for t in (args.noise_types or ",".join(NOISE_TYPES)).split(",") if t.strip()],
        noises_per_utterance=args.noises_per_utterance,
        snrs=snr_grid(args.snr_min, args.snr_max, args.snr_step),
        jnd_db=args.jnd_db,
        max_pair_gap_db=args.max_pair_gap_db,
        sample_rate=args.sample_rate,
        min_s=args.min_s,
        max_s=args.max_s,
        level_dbfs=args.level_dbfs,
        include_clean=not args.no_clean,
        val_fraction=args.val_fraction,
        splits=splits or None,
        utterances_per_shard=args.units_per_shard,
        shard_id=args.shard_id,
        num_shards=args.num_shards,
        jobs=args.jobs,
        seed=args.seed,
        progress=not args.no_progress,
    )
    expected = ("train", "val") if not splits and args.val_fraction > 0 else ()
    return report(manifest, args.out, time.perf_counter() - start, expected=expected, prog="aqa prep jnd")


if __name__ == "__main__":
    sys.exit(main())
