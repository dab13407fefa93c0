"""BEATs and M2D encoders: contract, padding invariance, front ends against references, published checkpoint
layouts (random tiny weights written in the published format), parameter counts. CPU, seconds."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tiny_encoders import perturb

from aqa.encoders.beats import (
    BEATsEncoder,
    build_beats_iter3_plus_as2m,
    kaldi_fbank,
    load_beats,
)
from aqa.encoders.m2d import (
    M2DEncoder,
    build_m2d_vit_base,
    load_m2d,
    log_mel,
    slaney_mel_filters,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "encoder"
SR = 16000
BEATS_TINY = {
    "embed_dim": 16,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 2,
    "encoder_layers": 2,
    "conv_pos": 16,
    "conv_pos_groups": 2,
    "num_buckets": 32,
    "max_distance": 64,
}
M2D_TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "input_size": [80, 64]}
LORA = {"beats": ["q_proj", "v_proj"], "m2d": ["qkv"]}


def tiny(family: str, adapter: dict | None = None, freeze_backbone: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    if family == "beats":
        return build_beats_iter3_plus_as2m(arch=BEATS_TINY, freeze=freeze_backbone, adapter=adapter)
    return build_m2d_vit_base(arch=M2D_TINY, freeze=freeze_backbone, adapter=adapter)


def masked_mean(out, index: int) -> list[torch.Tensor]:
    n = int(out.lengths[index])
    return [layer[index, :n].mean(dim=0) for layer in out.layers]


@pytest.fixture
def wav() -> torch.Tensor:
    return 0.1 * torch.randn(3, SR, generator=torch.Generator().manual_seed(1))


FAMILIES = ["beats", "m2d"]


# ---------------------------------------------------------------------------------------------- contract


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_forward_shapes_and_backward(family: str, wav: torch.Tensor) -> None:
    enc = tiny(family).train()
    expected = {"beats": (SR, 32, 3, 6.25), "m2d": (SR, 160, 2, 6.25)}[family]
    assert (enc.sample_rate, enc.output_dim, enc.num_layers, enc.frame_rate) == expected
    lengths = torch.tensor([SR, 9000, 5000])
    out = enc(wav, lengths)
    assert len(out.layers) == enc.num_layers and out.lengths.dtype == torch.long
    frames = out.layers[0].shape[1]
    assert all(layer.shape == (3, frames, enc.output_dim) for layer in out.layers)
    assert int(out.lengths[0]) == frames and out.lengths.tolist() == enc.frame_lengths(lengths).tolist()
    assert abs(frames - enc.frame_rate) <= 1  # ~6 frames for 1 s
    sum(layer.pow(2).mean() for layer in out.layers).backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_batch_matches_clip_alone(family: str, wav: torch.Tensor) -> None:
    enc = tiny(family).eval()
    perturb(enc)
    lengths = torch.tensor([SR, 9000, 5000])
    padded = wav.clone()
    padded[1, 9000:] = 0.0
    padded[2, 5000:] = 0.3  # padding content must not matter either
    with torch.no_grad():
        batch = enc(padded, lengths)
        for i in range(3):
            alone = enc(wav[i : i + 1, : int(lengths[i])])
            assert int(alone.lengths[0]) == int(batch.lengths[i]) == alone.layers[0].shape[1]
            for a, b in zip(masked_mean(alone, 0), masked_mean(batch, i), strict=True):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_m2d_chunks_long_input_like_the_runtime() -> None:
    # 64-frame chunks (4 patches each): 2.5 s = 251 mel frames -> 3 full chunks + 59 frames (4 patches);
    # 0.75 s = 76 frames -> 1 chunk + 12 frames (1 patch, zero-padded)
    enc = tiny("m2d").eval()
    wav = 0.1 * torch.randn(2, 40000, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([40000, 12000])
    with torch.no_grad():
        out = enc(wav, lengths)
        assert out.lengths.tolist() == [3 * 4 + 4, 1 * 4 + 1] and out.layers[0].shape[1] == 16
        # each chunk is encoded on its own: a clip whose first 64 mel frames equal those of the long clip
        # (10400 samples: frames 0-63 need no reflection at the end) gives the same first-chunk frames
        first = enc(wav[:1, :10400])
        assert first.lengths.tolist() == [4 + 1]
        torch.testing.assert_close(first.layers[-1][0, :4], out.layers[-1][0, :4], atol=1e-4, rtol=1e-4)
        alone = enc(wav[1:, :12000])
        for a, b in zip(masked_mean(alone, 0), masked_mean(out, 1), strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_short_input() -> None:
    beats, m2d = tiny("beats").eval(), tiny("m2d").eval()
    short = 0.1 * torch.randn(1, SR // 10)  # 0.1 s
    with pytest.raises(ValueError, match=r"2800 samples \(0.175 s"):
        beats(short)
    assert beats(0.1 * torch.randn(1, 2800)).lengths.tolist() == [1]
    out = m2d(short)  # M2D pads the last chunk to a whole patch: 0.1 s gives one frame
    assert out.lengths.tolist() == [1] and out.layers[0].shape == (1, 1, 160)
    with pytest.raises(ValueError, match="201 samples"):
        m2d(torch.randn(1, 150))
    with pytest.raises(ValueError, match="lengths"):
        m2d(short, torch.tensor([SR]))


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_and_freeze(family: str, wav: torch.Tensor) -> None:
    adapter = {"name": "lora", "r": 2, "alpha": 4, "dropout": 0.0, "target_modules": LORA[family]}
    enc = tiny(family, adapter=adapter)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * 2 * len(LORA[family])  # A and B per target in 2 layers
    out = enc(wav[:1], None)
    sum(layer.pow(2).mean() for layer in out.layers).backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in tiny(family, freeze_backbone=True).parameters())


# ------------------------------------------------------------------------------------------ front ends


def numpy_kaldi_fbank(x: np.ndarray, num_bins: int = 128, sr: int = SR) -> np.ndarray:
    # Kaldi feature-window.cc / mel-computations.cc, float64, frame by frame.
    frame_len, shift, fft = 400, 160, 512
    n_frames = 1 + (len(x) - frame_len) // shift
    n = np.arange(frame_len)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / (frame_len - 1))) ** 0.85
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    low, high = mel(20.0), mel(sr / 2)
    delta = (high - low) / (num_bins + 1)
    banks = np.zeros((num_bins, fft // 2 + 1))
    for b in range(num_bins):
        left, centre, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        for k in range(fft // 2):
            m = mel(k * sr / fft)
            if left < m < right:
                banks[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    out = np.zeros((n_frames, num_bins))
    for t in range(n_frames):
        frame = x[t * shift : t * shift + frame_len].astype(np.float64)
        frame = frame - frame.mean()
        frame = frame - 0.97 * np.concatenate([frame[:1], frame[:-1]])
        spectrum = np.abs(np.fft.rfft(frame * window, n=fft)) ** 2
        out[t] = np.log(np.maximum(banks @ spectrum, np.finfo(np.float32).eps))
    return out


def test_kaldi_fbank_matches_numpy_reference() -> None:
    x = torch.randn(2, 3000, generator=torch.Generator().manual_seed(4)) * 3000.0
    x[1, :1000] = 0.0  # silent frames hit the log floor
    got = kaldi_fbank(x)
    assert got.shape == (2, 1 + (3000 - 400) // 160, 128)
    for i in range(2):
        ref = torch.from_numpy(numpy_kaldi_fbank(x[i].numpy())).float()
        torch.testing.assert_close(got[i], ref, atol=2e-3, rtol=1e-4)
    assert kaldi_fbank(torch.zeros(1, 399)).shape == (1, 0, 128)


def _torchaudio_kaldi() -> types.ModuleType | None:
    # torchaudio.compliance.kaldi is pure Python; load that file alone (the package's compiled parts do not
    # load on this machine), with a placeholder for its unused `import torchaudio`.
    spec = importlib.util.find_spec("torchaudio")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "compliance" / "kaldi.py"
    if not path.is_file():
        return None
    saved = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = saved or types.ModuleType("torchaudio")
    try:
        module_spec = importlib.util.spec_from_file_location("_aqa_torchaudio_kaldi", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["torchaudio"]
    return module


def test_kaldi_fbank_matches_torchaudio_compliance_kaldi() -> None:
    kaldi = _torchaudio_kaldi()
    if kaldi is None:
        pytest.skip("torchaudio's compliance/kaldi.py is not installed")
    x = torch.randn(1, 8000, generator=torch.Generator().manual_seed(5)) * 2**15 * 0.1
    ref = kaldi.fbank(x, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10)
    torch.testing.assert_close(kaldi_fbank(x)[0], ref, atol=5e-4, rtol=1e-4)


def numpy_slaney_mel(
    sr: int = SR, n_fft: int = 400, n_mels: int = 80, fmin: float = 50.0, fmax: float = 8000.0
):
    # librosa.filters.mel(htk=False, norm='slaney'), as nnAudio's MelSpectrogram (norm=1) builds it
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m):
        return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * 200.0 / 3)

    hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    weights = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lower = (freqs - hz[i]) / (hz[i + 1] - hz[i])
        upper = (hz[i + 2] - freqs) / (hz[i + 2] - hz[i + 1])
        weights[i] = np.maximum(0, np.minimum(lower, upper)) * 2.0 / (hz[i + 2] - hz[i])
    return weights


def test_m2d_log_mel_matches_numpy_reference() -> None:
    filters = slaney_mel_filters()
    np.testing.assert_allclose(filters.numpy(), numpy_slaney_mel(), rtol=1e-9, atol=1e-12)
    x = 0.1 * np.random.default_rng(6).standard_normal(4000)
    padded = np.pad(x, 200, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic hann
    frames = np.stack([padded[t * 160 : t * 160 + 400] for t in range(1 + 4000 // 160)])
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    ref = np.log(power @ numpy_slaney_mel().T + np.finfo(np.float32).eps).T
    got = log_mel(torch.from_numpy(x).float(), filters.float(), torch.hann_window(400, periodic=True))
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-3, rtol=1e-4)


# --------------------------------------------------------------------------------- published checkpoints


def beats_published_blob(enc: BEATsEncoder, finetuned: bool = False) -> dict:
    # torch.save({'cfg': BEATsConfig.__dict__, 'model': state_dict}) as the BEATs releases hold it
    cfg = {**enc.cfg, "finetuned_model": finetuned}
    if finetuned:
        cfg.update(predictor_class=527, predictor_dropout=0.1)
    state = {k: v.clone() for k, v in enc.model.state_dict().items()}
    if finetuned:
        state["predictor.weight"] = torch.randn(527, enc.output_dim)
        state["predictor.bias"] = torch.randn(527)
    return {"cfg": cfg, "model": state}


@pytest.mark.parametrize("finetuned", [False, True], ids=["pretrained", "finetuned-with-label-head"])
def test_beats_published_checkpoint_round_trip(tmp_path: Path, wav: torch.Tensor, finetuned: bool) -> None:
    original = tiny("beats").eval()
    perturb(original.model)
    blob = beats_published_blob(original, finetuned)
    keys = set(blob["model"])
    # the published names: old-style weight norm, the shared bias table saved under every layer
    assert {"encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v", "patch_embedding.weight"} <= keys
    assert "encoder.layers.1.self_attn.relative_attention_bias.weight" in keys
    assert "encoder.layers.0.self_attn.grep_a" in keys and "post_extract_proj.weight" in keys
    path = tmp_path / "BEATs_iter3_plus_AS2M.pt"
    torch.save(blob, path)
    torch.load(path, weights_only=True)  # the cfg holds only plain values
    loaded = build_beats_iter3_plus_as2m(checkpoint=str(path)).eval()
    assert loaded.num_layers == 3 and loaded.output_dim == 32
    with torch.no_grad():
        for a, b in zip(original(wav).layers, loaded(wav).layers, strict=True):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_beats_all_tokens_keep_every_frequency_patch() -> None:
    """``tokens: all`` returns BEATs' own time-major token sequence (HAAQI-Net's input): 8 frames per 160 ms step
    whose per-step mean is the default output, and a clip alone equals the same clip inside a padded batch."""
    torch.manual_seed(0)
    mean = build_beats_iter3_plus_as2m(arch=BEATS_TINY).eval()
    every = build_beats_iter3_plus_as2m(arch=BEATS_TINY, tokens="all").eval()
    every.load_state_dict(mean.state_dict())
    assert every.frame_rate == 8 * mean.frame_rate == 50.0
    wav = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([16000, 9000])
    with torch.no_grad():
        a, b = mean(wav, lengths), every(wav, lengths)
        alone = every(wav[1:, :9000])
    assert b.lengths.tolist() == [8 * n for n in a.lengths.tolist()]
    steps = b.layers[-1].shape[1] // 8
    torch.testing.assert_close(b.layers[-1].view(2, steps, 8, -1).mean(2), a.layers[-1], atol=1e-6, rtol=0)
    n = int(b.lengths[1])
    torch.testing.assert_close(alone.layers[-1][0, :n], b.layers[-1][1, :n], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="tokens"):
        build_beats_iter3_plus_as2m(arch=BEATS_TINY, tokens="max")


def test_beats_key_mismatch_names_the_key(tmp_path: Path) -> None:
    blob = beats_published_blob(tiny("beats"))
    del blob["model"]["encoder.layers.1.fc2.bias"]
    torch.save(blob, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"missing keys \[encoder\.layers\.1\.fc2\.bias\]"):
        load_beats(tmp_path / "ckpt.pt")


def m2d_published_state(enc: M2DEncoder, norm_stats: bool) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in enc.model.state_dict().items()}
    if not norm_stats:
        del state["norm_stats"]
    return state


@pytest.mark.parametrize(
    "layout", ["training-checkpoint", "encoder-only", "runtime-backbone", "clap-enconly"]
)
def test_m2d_published_checkpoint_round_trip(tmp_path: Path, wav: torch.Tensor, layout: str) -> None:
    original = tiny("m2d").eval()
    perturb(original.model)
    folder = "m2d_vit_base-80x64p16x16-221006-mr7"
    if layout == "training-checkpoint":  # MAE's save_model: {'model', 'optimizer', 'epoch', 'scaler', 'args'}
        with torch.no_grad():
            # 2022 files have no stats; the runtime's default applies
            original.model.norm_stats.copy_(torch.tensor([-7.1, 4.2]))
        state = m2d_published_state(original, norm_stats=False)
        state.update(
            {"target_blocks.0.attn.qkv.weight": torch.randn(96, 32), "mask_token": torch.zeros(1, 1, 16)}
        )
        state.update({"decoder_embed.weight": torch.randn(16, 32), "target_norm.weight": torch.ones(32)})
        blob = {
            "model": state,
            "epoch": 300,
            "args": argparse.Namespace(model="m2d_vit_base", mask_ratio=0.7),
        }
        name = "checkpoint-300.pth"
    elif layout == "encoder-only":  # util/to_encoder_only_weight.py: backbone.state_dict() with norm_stats
        blob, name = m2d_published_state(original, norm_stats=True), "checkpoint-300.pth"
    elif layout == "runtime-backbone":
        blob = {"backbone." + k: v for k, v in m2d_published_state(original, True).items()}
        name = "weights.pth"
    else:
        folder = "m2d_clap_vit_base-80x64p16x16-240128_AS-FT_enconly"
        blob = {"module.ar.runtime.backbone." + k: v for k, v in m2d_published_state(original, True).items()}
        blob["module.ar.runtime.backbone.audio_proj.0.weight"] = torch.randn(32, 32)
        blob["module.ar.runtime.backbone.text_proj.weight"] = torch.randn(32, 32)
        blob["module.head.mlp.mlp.0.weight"] = torch.randn(527, 160)
        name = "weights_ep67it3124-0.48558.pth"
    path = tmp_path / folder / name
    path.parent.mkdir()
    torch.save(blob, path)
    loaded = load_m2d(path, arch={"num_heads": 2}).eval()
    assert loaded.unit_frames == 64 and loaded.num_layers == 2 and loaded.output_dim == 160
    with torch.no_grad():
        for a, b in zip(original(wav).layers, loaded(wav).layers, strict=True):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_m2d_key_mismatch_and_variant_errors(tmp_path: Path) -> None:
    state = m2d_published_state(tiny("m2d"), True)
    del state["blocks.1.mlp.fc2.bias"]
    path = tmp_path / "m2d_vit_base-80x64p16x16-221006-mr7" / "checkpoint-300.pth"
    path.parent.mkdir()
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing keys \[blocks\.1\.mlp\.fc2\.bias\]"):
        load_m2d(path, arch={"num_heads": 2})
    other = tmp_path / "weights" / "model.pth"
    other.parent.mkdir()
    torch.save(state, other)
    with pytest.raises(ValueError, match="variant="):
        load_m2d(other)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (build_beats_iter3_plus_as2m, "BEATs_iter3_plus_AS2M.pt"),
        (build_m2d_vit_base, "github.com/nttcslab/m2d/releases"),
    ],
    ids=["beats", "m2d"],
)
def test_missing_checkpoint_says_what_and_where(tmp_path: Path, build: Callable, expected: str) -> None:
    where = tmp_path / "nowhere" / "weights.pt"
    with pytest.raises(FileNotFoundError) as err:
        build(checkpoint=str(where))
    message = str(err.value)
    assert str(where) in message and expected in message and "encoder.checkpoint=" in message


# ----------------------------------------------------------------------------------- full size, configs


# meta: shapes only (no memory, no init: 0.4 s, the default suite); cpu (slow, `make test-full`): the full-size
# weights initialised as training builds them (2.9 s on the shared 2 cores), the same counts
@pytest.mark.parametrize("device", ["meta", pytest.param("cpu", marks=pytest.mark.slow)])
def test_full_size_parameter_counts(device: str) -> None:
    # BEATs paper (arXiv 2212.09058): 90M. M2D ViT-Base: the encoder-only release is 326 MB of float32
    # (util/to_encoder_only_weight.py: "1.6G to 326M"), i.e. ~85.4M values.
    with torch.device(device):
        beats = build_beats_iter3_plus_as2m()
        m2d = build_m2d_vit_base()
        clap = build_m2d_vit_base(variant="m2d_clap_vit_base-80x1001p16x16")
    count = sum(p.numel() for p in beats.parameters())
    assert abs(count / 90e6 - 1) < 0.01, count
    assert (beats.num_layers, beats.output_dim, beats.frame_rate) == (13, 768, 6.25)
    count = sum(p.numel() for p in m2d.parameters())
    assert abs(count * 4 / 2**20 / 326 - 1) < 0.01, count
    assert (m2d.num_layers, m2d.output_dim, m2d.unit_frames) == (12, 3840, 608)
    assert clap.unit_frames == 1001 and clap.model.pos_embed.shape == (1, 1 + 5 * 62, 768)


@pytest.mark.parametrize("name", ["beats_iter3_plus_as2m_tiny", "m2d_vit_base_tiny"])
def test_tiny_yaml_configs_build(name: str) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert cfg.pop("name") == name.removesuffix("_tiny")  # the full-size builder, with a smaller arch
    assert cfg.pop("compile") is False  # build_encoder's own option, not the builder's
    build = {
        "beats_iter3_plus_as2m_tiny": build_beats_iter3_plus_as2m,
        "m2d_vit_base_tiny": build_m2d_vit_base,
    }
    enc = build[name](**cfg)
    assert all("lora_" in n for n, p in enc.named_parameters() if p.requires_grad)
    out = enc(0.1 * torch.randn(1, SR), None)
    assert len(out.layers) == enc.num_layers and math.isfinite(float(out.layers[-1].detach().sum()))


@pytest.mark.parametrize(
    ("name", "build"),
    [("beats_iter3_plus_as2m", build_beats_iter3_plus_as2m), ("m2d_vit_base", build_m2d_vit_base)],
)
def test_full_yaml_configs_point_at_the_published_file(name: str, build: Callable, tmp_path: Path) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert cfg.pop("name") == name
    cfg.pop("compile")
    cfg["checkpoint"] = str(tmp_path / cfg["checkpoint"])  # not there: fails before building anything
    with pytest.raises(FileNotFoundError, match="encoder.checkpoint="):
        build(**cfg)
