"""Encoder benchmarks: forward time for 10 s of audio on CPU, real-time factor, and the framework's overhead.

For each full-size encoder (random weights, ``checkpoint: null``) this times the ``aqa`` encoder's forward
(input checks, lengths, padding masks, every hidden state into ``EncoderOutput``) against a bare call on the same
input, batch 1, inference mode. Calls alternate and the best of ``--repeat`` runs counts, so both see the same
machine load. Run with `make bench`. Prints figures; asserts nothing about timings (they vary up to 3x on this
shared machine, so compare the ratios measured in one run).

The bare call:

- MERT, WavLM, wav2vec 2.0: ``model(x)`` of an untouched ``transformers`` model of the same class holding the
  same weights (a separate copy).
- BEATs, M2D, MuQ (own modules, no upstream class installed): the plain forward path of the published reference
  code, written here as one straight call on the encoder's own modules (same weights, no copy): the same front
  end function on the whole batch, no length checks, no padding masks, no per-layer collection, only the last
  hidden state in the model's native layout:

  - ``beats_iter3_plus_as2m`` (as BEATs ``extract_features``): ``kaldi_fbank(x * 2^15)`` over the whole input,
    ``(fbank - mean) / (2 std)``, patch embedding, LayerNorm, ``post_extract_proj``, positional convolution +
    LayerNorm, the relative position bias, the 12 layers; returns the (B, 8 T', 768) token sequence (no mean over
    the 8 frequency patches, no input trimming to whole patches);
  - ``m2d_vit_base`` (as the runtime's ``encode``): ``log_mel`` of the whole batch in one STFT, normalisation,
    zero padding to whole patches, then per 608-frame chunk: patch embedding + cropped ``pos_embed`` + cls
    token, the 12 blocks, the final LayerNorm, cls dropped and ``b (f t) d -> b t (f d)`` of that output only;
    chunks concatenated;
  - ``muq_large_msd`` (as ``MuQ.forward``): ``torch.stft(center=True)`` log-mel with the last frame dropped,
    normalisation, the two plain ``Res2dModule`` blocks and the Linear (no masking), then ``transformers``'
    ``Wav2Vec2ConformerEncoder.forward(x).last_hidden_state`` (no token head, no hidden-state tuple).

  Before timing, each bare output is checked against the encoder's last hidden state (after the per-frame mean
  for BEATs), so both calls compute the same thing.

Quick check of the own-module paths without loading the machine: ``--tiny`` (the ``_tiny`` configs) or
``--seconds 1 --repeat 1 --only beats_iter3_plus_as2m``.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch import Tensor  # noqa: E402

from aqa.encoders import build_encoder  # noqa: E402
from aqa.encoders.beats import FBANK_MEAN, FBANK_STD, BEATsEncoder, kaldi_fbank  # noqa: E402
from aqa.encoders.hf import WAV2VEC2_BASE, WAVLM_BASE_PLUS, WAVLM_LARGE  # noqa: E402
from aqa.encoders.m2d import M2DEncoder, log_mel  # noqa: E402
from aqa.encoders.mert import MERT_V1_95M, MERT_V1_330M  # noqa: E402
from aqa.encoders.muq import MuQEncoder  # noqa: E402

VARIANTS = (MERT_V1_95M, MERT_V1_330M, WAVLM_BASE_PLUS, WAVLM_LARGE, WAV2VEC2_BASE)
OWN_MODULE_ENCODERS = ("beats_iter3_plus_as2m", "m2d_vit_base", "muq_large_msd")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "encoder"


def beats_bare(enc: BEATsEncoder, wav: Tensor) -> Tensor:
    """BEATs ``extract_features`` without padding mask: fbank -> patches -> transformer; (B, 8 T', D) tokens."""
    m = enc.model
    fbank = (kaldi_fbank(wav * 2**15) - FBANK_MEAN) / (2 * FBANK_STD)
    x = m.layer_norm(m.patch_embedding(fbank[:, None]).flatten(2).transpose(1, 2))
    if m.post_extract_proj is not None:
        x = m.post_extract_proj(x)
    x = m.dropout_input(x)
    e = m.encoder
    x = x + e.pos_conv(x.transpose(1, 2)).transpose(1, 2)
    if not e.pre_norm:
        x = e.layer_norm(x)
    x = e.dropout(x)
    bias = e.layers[0].self_attn.position_bias(x.shape[1], x.device) if e.rel_pos else None
    for layer in e.layers:
        x = layer(x, None, bias)
    return e.layer_norm(x) if e.pre_norm else x


def m2d_bare(enc: M2DEncoder, wav: Tensor) -> Tensor:
    """M2D runtime ``encode``: batched log-mel, normalise, per chunk ViT + final norm; (B, T', F' D)."""
    m = enc.model
    lms = (log_mel(wav, enc.mel_filters, enc.window) - m.norm_stats[0]) / m.norm_stats[1]  # (B, 80, T)
    frames = lms.shape[-1]
    lms = F.pad(lms, (0, (-(frames % enc.unit_frames)) % enc.patch_frames))[:, None]
    dim = m.pos_embed.shape[-1]
    grid_pos = m.pos_embed[:, 1:].reshape(1, m.grid[0], m.grid[1], dim)
    outs = []
    for start in range(0, lms.shape[-1], enc.unit_frames):
        x = m.patch_embed.proj(lms[..., start : start + enc.unit_frames])  # (B, D, F', T')
        steps = x.shape[-1]
        x = x.flatten(2).transpose(1, 2) + grid_pos[:, :, :steps].reshape(1, -1, dim)
        x = torch.cat([(m.cls_token + m.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], dim=1)
        for block in m.blocks:
            x = block(x, None)
        x = m.norm(x)[:, 1:]
        outs.append(x.reshape(x.shape[0], enc.fbins, steps, dim).permute(0, 2, 1, 3).flatten(2))
    return torch.cat(outs, dim=1)


def muq_bare(enc: MuQEncoder, wav: Tensor) -> Tensor:
    """``MuQ.forward``: log-mel, plain conv subsampling, ``Wav2Vec2ConformerEncoder(x)``; (B, T', 1024)."""
    fe = enc.front_end
    spec = torch.stft(
        wav, fe.n_fft, fe.hop_length, window=fe.window, center=True, pad_mode="reflect", return_complex=True
    )[..., :-1]
    mel = fe.filters.T @ (spec.real.square() + spec.imag.square())  # (B, n_mels, T)
    x = ((10.0 * torch.log10(mel.clamp_min(1e-10)) - fe.mean) / fe.std)[:, None]
    for b in enc.model.conv.conv:  # MuQ's Res2dModule
        h = b.bn2(b.conv2(F.relu(b.bn1(b.conv1(x)))))
        x = F.relu(h + (b.bn3(b.conv3(x)) if b.projected else x))
    x = enc.model.conv.linear(x.permute(0, 3, 1, 2).flatten(2))  # "b c f t -> b t (c f)"
    return enc.model.conformer(x).last_hidden_state


BARE = {"beats": beats_bare, "m2d": m2d_bare, "muq": muq_bare}


def check_bare(name: str, enc: torch.nn.Module, bare: Tensor, wav: Tensor) -> None:
    """The bare call must compute the encoder's last hidden state (BEATs: after the per-frame mean)."""
    last = enc(wav).layers[-1]
    if isinstance(enc, BEATsEncoder):
        bare = bare.view(bare.shape[0], -1, enc.freq_patches, bare.shape[-1]).mean(dim=2)
    if bare.shape != last.shape:
        raise AssertionError(f"{name}: bare output {tuple(bare.shape)} != encoder output {tuple(last.shape)}")
    torch.testing.assert_close(
        bare, last, atol=1e-3, rtol=1e-3, msg=lambda m: f"{name}: bare != encoder: {m}"
    )


def best_of(fns: dict[str, object], repeat: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="encoder names (default: all)")
    parser.add_argument(
        "--tiny", action="store_true", help="own-module encoders only, as their _tiny configs (quick check)"
    )
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.seconds:.0f} s of audio, batch 1"
    )
    print(f"{'encoder':<26} {'params':>8} {'aqa fwd':>8} {'RTF':>6} {'bare':>8} {'overhead':>9}")
    for variant in () if args.tiny else VARIANTS:
        if args.only and variant.name not in args.only:
            continue
        enc = build_encoder(
            {"name": variant.name, "checkpoint": None, "freeze": True, "adapter": None}
        ).eval()
        bare = variant.model_cls(variant.config()).eval()
        bare.load_state_dict(enc.model.state_dict())  # same weights, untouched transformers modules
        x = 0.1 * torch.randn(1, int(args.seconds * enc.sample_rate))
        with torch.inference_mode():
            times = best_of({"aqa": lambda e=enc, x=x: e(x), "bare": lambda m=bare, x=x: m(x)}, args.repeat)
        report(variant.name, enc, times, args.seconds)
        del enc, bare
        gc.collect()
    for name in OWN_MODULE_ENCODERS:
        if args.only and name not in args.only:
            continue
        cfg = {"name": name, "checkpoint": None, "freeze": True, "adapter": None}
        if args.tiny:
            tiny = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}_tiny.yaml"))
            cfg = {**cfg, "name": tiny["name"], "arch": tiny["arch"]}
        enc = build_encoder(cfg).eval()
        bare_fn = BARE[name.split("_")[0]]
        x = 0.1 * torch.randn(1, int(args.seconds * enc.sample_rate))
        with torch.inference_mode():
            check_bare(cfg["name"], enc, bare_fn(enc, x), x)
            times = best_of(
                {"aqa": lambda e=enc, x=x: e(x), "bare": lambda e=enc, x=x, f=bare_fn: f(e, x)}, args.repeat
            )
        report(cfg["name"], enc, times, args.seconds)
        del enc
        gc.collect()


def report(name: str, enc: torch.nn.Module, times: dict[str, float], seconds: float) -> None:
    params = sum(p.numel() for p in enc.parameters()) / 1e6
    overhead = 100 * (times["aqa"] / times["bare"] - 1)
    print(
        f"{name:<26} {params:>7.1f}M {times['aqa']:>7.3f}s {times['aqa'] / seconds:>6.3f} "
        f"{times['bare']:>7.3f}s {overhead:>+8.1f}%"
    )


if __name__ == "__main__":
    main()
