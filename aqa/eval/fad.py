"""Fréchet Audio Distance (FAD) per system of a listening test, on the embeddings of any zoo encoder.

DeePAQ (Jiang et al. 2025) lists FAD on MERT-v1-95M embeddings among its baselines and notes that FAD is highly
sensitive to the number of clips and to the choice of the reference set; the paper does not say which MERT layer
or which reference set it used. aqa's choice, stated here and in ``aqa eval --help``:

- embeddings: the hidden state ``layer`` of the encoder (default the last one: hidden state 12 of MERT-v1-95M,
  fadtk's default MERT layer), averaged over time per clip (``pooling="mean"``, one (D,) vector per clip), or
  every frame as its own sample (``pooling="frames"``, as fadtk does; many more samples per system);
- per system: the Fréchet distance between the Gaussians fitted to the system's degraded clips and to the
  reference set;
- the reference set: the test's distinct ``reference`` files; a test without references needs an explicit set
  (``reference=`` files or a folder, ``--fad-reference``): FAD against the test's own pooled clips would measure
  distance from the average system, not quality, so it is refused rather than guessed.

FAD is a distance: lower = better. It has one value per system and none per rated item, so ``aqa eval`` reports it
only at the system level (its correlations come out negative, like CDPAM's; the mapped metrics absorb the sign).

Why not a library: ``fadtk`` and ``frechet_audio_distance`` compute the same Fréchet distance (pytorch-fid's
formula with ``scipy.linalg.sqrtm``; here the same trace from symmetric eigendecompositions, see
:func:`frechet_distance`) but bundle their own model loaders (their own downloads, no random-weight twins); aqa
needs its encoder zoo (:mod:`aqa.encoders`, the YAML configs, the tiny encoders the tests run offline) and its
audio loading, and the distance itself is a few lines of numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from aqa.audio import AUDIO_SUFFIXES

__all__ = [
    "MIN_CLIPS",
    "DEFAULT_ENCODER",
    "gaussian_stats",
    "frechet_distance",
    "fad",
    "embed_files",
    "reference_set",
    "system_fad",
]

log = logging.getLogger(__name__)

MIN_CLIPS = 2  # fewer samples than this give no covariance at all: refused
DEFAULT_ENCODER = "mert_v1_95m"
POOLINGS = ("mean", "frames")


def gaussian_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a set of embeddings.

    Args:
        embeddings: (N, D) samples, N >= :data:`MIN_CLIPS`.

    Returns:
        ``(mu (D,), sigma (D, D))``, float64; sigma is the unbiased sample covariance (rank <= N - 1).

    Raises:
        ValueError: not 2-D, fewer than :data:`MIN_CLIPS` samples, or non-finite values.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    if x.shape[0] < MIN_CLIPS:
        raise ValueError(f"a Fréchet distance needs at least {MIN_CLIPS} embeddings per set, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or inf")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982):
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``.

    ``tr sqrtm(sigma1 sigma2)`` is computed as ``tr sqrt(R sigma2 R)`` with ``R = sigma1^(1/2)`` (both from symmetric
    eigendecompositions, negative rounding eigenvalues set to 0): the same trace, since ``sigma1 sigma2`` is similar
    to ``R sigma2 R``, always real, and ~9x faster than ``scipy.linalg.sqrtm`` of the non-symmetric product at
    768 dimensions (1.2 s against 10 s here), which may also return a complex result for singular covariances.
    When either covariance is singular (rank-deficient: fewer samples than dimensions), ``eps`` times the mean
    variance (at least ``eps``) is first added to both diagonals, as pytorch-fid does; a rounding-negative result is 0.

    Args:
        mu1, mu2: (D,) means. sigma1, sigma2: (D, D) symmetric positive semi-definite covariances.
        eps: relative diagonal offset for singular covariances (0: none).

    Returns:
        The squared Fréchet distance (>= 0).

    Raises:
        ValueError: shapes that do not match, or non-finite values.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    if not all(np.all(np.isfinite(x)) for x in (mu1, mu2, s1, s2)):
        raise ValueError("means or covariances contain NaN or inf")
    s1, s2 = (s1 + s1.T) / 2.0, (s2 + s2.T) / 2.0
    w1, v1 = np.linalg.eigh(s1)
    w2 = np.linalg.eigvalsh(s2)
    if eps > 0 and any(w[0] <= 1e-10 * max(float(w[-1]), 1e-30) for w in (w1, w2)):
        offset = eps * max(float(np.mean(np.diag(s1)) + np.mean(np.diag(s2))) / 2.0, 1.0)
        s1, s2, w1 = s1 + offset * np.eye(d), s2 + offset * np.eye(d), w1 + offset
    root1 = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T  # sigma1^(1/2), symmetric
    middle = root1 @ s2 @ root1
    tr_covmean = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None))))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def fad(embeddings: np.ndarray, reference: np.ndarray, eps: float = 1e-6) -> float:
    """FAD between two sets of embeddings: :func:`frechet_distance` of their :func:`gaussian_stats`.

    With N <= D samples in a set its covariance has rank N - 1 < D: the value is still computed (``eps``
    regularises it) but is biased upward and comparable only between sets of equal size; a warning says so.

    Args:
        embeddings: (N, D) of the set scored. reference: (M, D) of the reference set.
    """
    emb, ref = np.asarray(embeddings), np.asarray(reference)
    if emb.ndim == 2 and ref.ndim == 2 and emb.shape[1] != ref.shape[1]:
        raise ValueError(f"embedding sizes differ: {emb.shape[1]} vs {ref.shape[1]}")
    for name, x in (("scored", emb), ("reference", ref)):
        if x.ndim == 2 and MIN_CLIPS <= x.shape[0] <= x.shape[1]:
            log.warning(
                "FAD: the %s set has %d embeddings of %d dimensions: its covariance is rank-deficient (rank <= %d), "
                "so the value is regularised, biased upward and comparable only at equal set sizes",
                name, x.shape[0], x.shape[1], x.shape[0] - 1,
            )
    return frechet_distance(*gaussian_stats(emb), *gaussian_stats(ref), eps=eps)


# ---------------------------------------------------------------------------------------------- embeddings


def build_fad_encoder(encoder: str | Mapping[str, Any] = DEFAULT_ENCODER) -> torch.nn.Module:
    """The zoo encoder ``encoder`` (a ``configs/encoder`` name or a config mapping), without its LoRA adapter,
    frozen, in eval mode."""
    from aqa.config import encoder_config
    from aqa.encoders import build_encoder

    entry = {"name": encoder} if isinstance(encoder, str) else dict(encoder)
    cfg = encoder_config({**entry, "adapter": None, "freeze": True})
    return build_encoder(cfg).eval()


@torch.inference_mode()
def embed_files(
    paths: Sequence[str | Path],
    encoder: torch.nn.Module,
    layer: int = -1,
    pooling: str = "mean",
    batch_size: int = 8,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> list[np.ndarray]:
    """Embed audio files with a zoo encoder, in padded batches of similar length (padding frames masked).

    Files are decoded, down-mixed and resampled to the encoder's rate (:func:`aqa.inference.engine.load_for`).

    Args:
        paths: audio files. encoder: built by :func:`build_fad_encoder` (any ``aqa.encoders`` module).
        layer: index into the encoder's hidden states (``EncoderOutput.layers``; negative counts from the end).
        pooling: ``mean`` (time mean, one (D,) vector per file) or ``frames`` (every valid frame, (F_i, D)).
        batch_size: files per forward.

    Returns:
        Per file, float32 (D,) or (F_i, D).

    Raises:
        ValueError: a bad ``pooling`` or ``layer``; decoding errors propagate (one line naming the file).
    """
    from aqa.inference.device import resolve_device
    from aqa.inference.engine import length_batches, load_for, pad_batch

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    dev = resolve_device(device)
    encoder = encoder.eval().to(dev)
    clips = [load_for(p, encoder.sample_rate) for p in paths]
    out: list[np.ndarray] = [np.empty(0, np.float32)] * len(clips)
    bar = tqdm(total=len(clips), unit="clip", desc="fad embeddings", disable=not progress)
    for chunk in length_batches([c.shape[-1] for c in clips], batch_size):
        wav, lengths = pad_batch([clips[i] for i in chunk])
        result = encoder(wav.to(dev), lengths.to(dev))
        n_layers = len(result.layers)
        if not -n_layers <= layer < n_layers:
            raise ValueError(f"layer {layer}: the encoder has {n_layers} hidden states (0..{n_layers - 1})")
        hidden = result.layers[layer].float().cpu()  # (B, F, D)
        frames = result.lengths.cpu().clamp(min=1, max=hidden.shape[1])
        for j, i in enumerate(chunk):
            valid = hidden[j, : int(frames[j])]
            out[i] = (valid.mean(dim=0) if pooling == "mean" else valid).numpy().astype(np.float32)
        bar.update(len(chunk))
    bar.close()
    return out


def reference_set(
    rows: Sequence[Mapping[str, Any]], reference: str | Path | Iterable[str | Path] | None = None
) -> list[str]:
    """The reference files of the FAD: ``reference`` (a folder: its audio files, sorted; or a list of files) when
    given, else the test's distinct ``reference`` cells in order of appearance.

    Raises:
        ValueError: no reference set (the test has no ``reference`` column and none was given), or an empty folder.
        FileNotFoundError: a given file or folder that does not exist.
    """
    if reference is not None:
        items = [Path(reference)] if isinstance(reference, str | Path) else [Path(p) for p in reference]
        files: list[str] = []
        for item in items:
            if item.is_dir():
                files += sorted(str(p) for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            elif item.is_file():
                files.append(str(item))
            else:
                raise FileNotFoundError(f"FAD reference {item} not found")
        if not files:
            raise ValueError(f"FAD reference {reference}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
        return list(dict.fromkeys(files))
    refs = list(dict.fromkeys(str(r.get("reference") or "") for r in rows if r.get("reference")))
    if not refs:
        raise ValueError(
            "FAD needs a reference set: the test has no reference column; give clean recordings with "
            "--fad-reference FOLDER (FAD against the test's own clips would not measure quality)"
        )
    return refs


def system_fad(
    rows: Sequence[Mapping[str, Any]],
    encoder: str | Mapping[str, Any] = DEFAULT_ENCODER,
    layer: int = -1,
    reference: str | Path | Iterable[str | Path] | None = None,
    pooling: str = "mean",
    batch_size: int = 8,
    device: str | torch.device = "auto",
    eps: float = 1e-6,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """FAD of each system of a listening test against the reference set (:func:`reference_set`).

    Every file (degraded and reference) is embedded once. A system with fewer than :data:`MIN_CLIPS` clips (or
    frames) gets NaN and a warning.

    Args:
        rows: the test's rows (:func:`aqa.eval.listening.read_test`): ``degraded``, ``system``, ``reference``.
        encoder, layer, pooling, batch_size, device: the embeddings (:func:`embed_files`).
        reference: the reference set when the test has none, or to replace its own.
        eps: :func:`frechet_distance`'s regulariser.

    Returns:
        system -> ``{"fad": float, "clips": int, "samples": int (clips, or frames with pooling="frames"),
        "reference_clips": int}``, systems sorted.

    Raises:
        ValueError: the test has no ``system`` column, or no reference set.
    """
    systems = [str(r.get("system") or "") for r in rows]
    if not any(systems):
        raise ValueError("FAD is computed per system: the test needs a system column")
    refs = reference_set(rows, reference)
    files = list(dict.fromkeys([*refs, *(str(r["degraded"]) for r, s in zip(rows, systems, strict=True) if s)]))
    module = build_fad_encoder(encoder)
    emb = dict(zip(files, embed_files(files, module, layer, pooling, batch_size, device, progress), strict=True))

    def stack(paths: Sequence[str]) -> np.ndarray:
        return np.concatenate([np.atleast_2d(emb[p]) for p in paths], axis=0)

    ref_stats = gaussian_stats(stack(refs))
    dim = ref_stats[0].shape[0]
    out: dict[str, dict[str, Any]] = {}
    for system in sorted(set(s for s in systems if s)):
        clips = [str(r["degraded"]) for r, s in zip(rows, systems, strict=True) if s == system]
        x = stack(clips)
        try:
            value = frechet_distance(*gaussian_stats(x), *ref_stats, eps=eps)
        except ValueError as err:
            log.warning("FAD: system %s left empty: %s", system, err)
            value = float("nan")
        out[system] = {"fad": value, "clips": len(clips), "samples": x.shape[0], "reference_clips": len(refs)}
    sizes = sorted({v["samples"] for v in out.values()})
    if sizes and sizes[0] <= dim:
        log.warning(
            "FAD: systems have %s embeddings of %d dimensions (reference set %d): covariances are rank-deficient, "
            "so the values are regularised, biased upward and comparable only between sets of equal size%s",
            "/".join(map(str, sizes)), dim, stack(refs).shape[0],
            "" if len(sizes) == 1 else " (here they differ)",
        )
    return out
