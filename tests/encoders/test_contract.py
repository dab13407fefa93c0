"""The encoder contract: the tiny random MERT in detail (shapes, hidden states, padding, normalisation, lengths,
LoRA, freezing), then every ``configs/encoder/*_tiny.yaml`` (the full-size builder with a small ``arch``), so a
newly registered encoder gets forward/backward, padding, input-adapter, short-input, LoRA/frozen and one-step
training checks automatically; chunked inference, LayerWeightedSum, and transformers-specific behaviour. CPU,
seconds."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from tiny_encoders import (
    CONFIGS,
    LORA,
    TINY,
    TINY_ARCH,
    build_tiny,
    pooled,
    seeded,
    tiny,
)
from torch import nn

from aqa.encoders import EncoderOutput, frame_lengths, freeze
from aqa.encoders.hf import normalize_waveform

SR = 24000


def test_frame_lengths_formula() -> None:
    kernel, stride = [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]
    got = frame_lengths(torch.tensor([0, 399, 400, 720, 24000, 240000]), kernel, stride)
    assert got.tolist() == [0, 0, 1, 2, 74, 749]
    # against real convolutions
    convs = nn.Sequential(*[nn.Conv1d(1, 1, k, s) for k, s in zip(kernel, stride, strict=True)])
    for n in (400, 1234, 24000):
        assert (
            convs(torch.zeros(1, 1, n)).shape[-1] == frame_lengths(torch.tensor([n]), kernel, stride).item()
        )


def test_tiny_forward_shapes_lengths_and_backward(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    enc = tiny()
    wav, lengths = batch
    assert (enc.sample_rate, enc.output_dim, enc.num_layers, enc.frame_rate) == (SR, 32, 3, 75.0)
    enc.train()  # layerdrop / SpecAugment are off: the number of hidden states is fixed in training too
    out = enc(wav, lengths)
    assert isinstance(out, EncoderOutput) and len(out.layers) == enc.num_layers
    frames = out.layers[0].shape[1]
    for layer in out.layers:
        assert layer.shape == (2, frames, enc.output_dim)
    assert out.lengths.dtype == torch.long
    assert out.lengths.tolist() == [frames, frames // 2] == [74, 37]  # ~75 frames per second
    assert abs(out.lengths[0].item() - enc.frame_rate * SR / enc.sample_rate) <= 1
    sum(layer.pow(2).mean() for layer in out.layers).backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert enc(wav).lengths.tolist() == [frames, frames]


def test_hidden_states_are_embedding_output_then_layers(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    enc = tiny().eval()
    enc.normalize = False  # compare against the raw backbone
    wav, _ = batch
    with torch.no_grad():
        out = enc(wav)
        m = enc.model
        feats = m.feature_projection(m.feature_extractor(wav).transpose(1, 2))
        first = m.encoder.layer_norm(feats + m.encoder.pos_conv_embed(feats))
    torch.testing.assert_close(out.layers[0], first)
    torch.testing.assert_close(out.layers[-1], m(wav).last_hidden_state)


def test_padding_is_zeroed_and_normalisation_uses_valid_samples(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    enc = tiny().eval()
    wav, lengths = batch
    garbage = wav.clone()
    garbage[1, SR // 2 :] = 5.0  # padding content must not matter
    with torch.no_grad():
        enc.normalize = False
        for a, b in zip(enc(wav, lengths).layers, enc(garbage, lengths).layers, strict=True):
            torch.testing.assert_close(a, b)
        enc.normalize = True
        scaled = wav.clone()
        scaled[1, : SR // 2] = 3.0 * scaled[1, : SR // 2] + 0.5  # affine change of the valid part only
        scaled[1, SR // 2 :] = -7.0
        for a, b in zip(enc(wav, lengths).layers, enc(scaled, lengths).layers, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_normalisation_matches_wav2vec2_feature_extractor() -> None:
    from transformers import Wav2Vec2FeatureExtractor

    gen = torch.Generator().manual_seed(2)
    wav = torch.randn(2, 800, generator=gen) * torch.tensor([[0.3], [2.0]]) + 0.1
    lengths = torch.tensor([800, 500])
    mask = torch.arange(800)[None, :] < lengths[:, None]
    ours = normalize_waveform(wav.masked_fill(~mask, 0.0), lengths, mask)
    theirs = Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(
        [w.numpy() for w in wav], attention_mask=mask.long().numpy(), padding_value=0.0
    )
    for row, ref in zip(ours, theirs, strict=True):
        torch.testing.assert_close(row, torch.from_numpy(ref).float(), atol=1e-5, rtol=1e-5)


def test_rejects_bad_lengths(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    enc = tiny()
    wav, _ = batch
    with pytest.raises(ValueError, match="lengths"):
        enc(wav, torch.tensor([SR + 1, SR]))
    with pytest.raises(ValueError, match="400 samples"):
        enc(wav, torch.tensor([SR, 100]))


def test_lora_only_adapters_train_and_get_gradients(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    enc = tiny(adapter=LORA)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * 2 * 2  # A and B for q_proj and v_proj in 2 layers
    wav, lengths = batch
    # B starts at zero: the adapted model equals the base model until trained
    with torch.no_grad():
        for lora_b in (p for n, p in enc.named_parameters() if "lora_B" in n):
            lora_b.normal_()
    out = enc(wav, lengths)
    sum(layer.pow(2).mean() for layer in out.layers).backward()
    for name, param in enc.named_parameters():
        if "lora_" in name:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_lora_state_dict_round_trip(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    a, b = tiny(adapter=LORA).eval(), tiny(adapter=LORA).eval()
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01 * torch.randn_like(p))
    b.load_state_dict(a.state_dict(), strict=True)
    wav, lengths = batch
    with torch.no_grad():
        for x, y in zip(a(wav, lengths).layers, b(wav, lengths).layers, strict=True):
            torch.testing.assert_close(x, y)


def test_freeze_flag() -> None:
    assert not any(p.requires_grad for p in tiny(freeze_backbone=True).parameters())
    both = tiny(adapter=LORA, freeze_backbone=True)
    assert {("lora_" in n) for n, p in both.named_parameters() if p.requires_grad} == {True}
    assert freeze(nn.Linear(2, 2)).weight.requires_grad is False


@pytest.mark.parametrize("name", TINY)
def test_tiny_contract_forward_backward(name: str) -> None:
    enc = build_tiny(name, adapter=None).train()
    for attr in ("sample_rate", "output_dim", "num_layers", "frame_rate"):
        assert hasattr(enc, attr), attr
    sr = int(enc.sample_rate)
    wav, lengths = seeded((2, sr)), torch.tensor([sr, sr // 2])
    out = enc(wav, lengths)
    assert isinstance(out, EncoderOutput) and len(out.layers) == enc.num_layers
    frames = out.layers[0].shape[1]
    assert all(h.shape == (2, frames, enc.output_dim) for h in out.layers)
    assert out.lengths.dtype == torch.long and out.lengths.shape == (2,)
    assert 1 <= out.lengths[1] <= out.lengths[0] <= frames
    if enc.frame_rate > 0:  # frame-level encoders: ~frame_rate frames per second
        assert abs(int(out.lengths[0]) - enc.frame_rate) <= 0.1 * enc.frame_rate + 2
    sum(h.pow(2).mean() for h in out.layers).backward()
    trainable = [(n, p) for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for _, p in trainable)


@pytest.mark.parametrize("name", TINY)
def test_clip_alone_equals_clip_in_padded_batch(name: str) -> None:
    enc = build_tiny(name, adapter=None).eval()
    sr = int(enc.sample_rate)
    clip = seeded((1, int(0.6 * sr)), seed=1)
    batch = seeded((3, sr), seed=2)
    batch[1] = 0.0
    batch[1, : clip.shape[1]] = clip[0]
    lengths = torch.tensor([sr, clip.shape[1], int(0.8 * sr)])
    with torch.no_grad():
        alone, inside = enc(clip), enc(batch, lengths)
    assert int(alone.lengths[0]) == int(inside.lengths[1])
    for a, b in zip(pooled(alone, 0), pooled(inside, 1), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", TINY)
def test_44k1_stereo_through_the_input_adapter(name: str) -> None:
    from aqa.encoders import adapt_input, prepare

    enc = build_tiny(name, adapter=None).eval()
    adapted = adapt_input(enc, 44100)
    assert adapted.sample_rate == 44100 and adapted.num_layers == enc.num_layers
    stereo = seeded((2, 2, 22050), seed=3)  # 2 clips x 2 channels x 0.5 s
    lengths = torch.tensor([22050, 15000])
    with torch.no_grad():
        out = adapted(stereo, lengths)
        wav, n = prepare(stereo, 44100, enc.sample_rate, lengths)
        direct = enc(wav, n)
    assert wav.shape == (2, -(-22050 * enc.sample_rate // 44100)) and n.tolist()[1] == -(-15000 * enc.sample_rate // 44100)
    for a, b in zip(out.layers, direct.layers, strict=True):
        torch.testing.assert_close(a, b)
    assert all(torch.isfinite(h).all() for h in out.layers)


@pytest.mark.parametrize("name", TINY)
def test_0_1_s_input_works_or_names_the_minimum(name: str) -> None:
    enc = build_tiny(name, adapter=None).eval()
    wav = seeded((1, int(0.1 * enc.sample_rate)))
    try:
        with torch.no_grad():
            out = enc(wav)
    except ValueError as err:
        assert "at least" in str(err), f"unclear message for short input: {err}"
        return
    assert int(out.lengths[0]) >= 1 and all(torch.isfinite(h).all() for h in out.layers)


@pytest.mark.parametrize("name", TINY)
def test_lora_adapts_and_frozen_trains_nothing(name: str) -> None:
    yaml_adapter = OmegaConf.load(CONFIGS / f"{name}.yaml").get("adapter")
    assert yaml_adapter is not None, f"{name}.yaml should declare its LoRA adapter (target_modules per family)"
    enc = build_tiny(name)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "layer_weights" in n for n in trainable), trainable
    sr = int(enc.sample_rate)
    wav = seeded((2, sr // 2), seed=4)
    base = build_tiny(name, adapter=None).eval()
    with torch.no_grad():
        reference = base(wav).layers[-1]
        for p in (p for n, p in enc.named_parameters() if "lora_B" in n):
            p.normal_()  # B starts at zero; a non-zero update must reach the output (adapters really run)
        adapted = enc.eval()(wav).layers[-1]
    assert (adapted - reference).abs().max() > 1e-4, "LoRA weights do not change the output"
    out = enc.train()(wav, torch.tensor([sr // 2, sr // 3]))
    sum(h.pow(2).mean() for h in out.layers).backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if "lora_" in n)

    frozen = build_tiny(name, freeze=True, adapter=None)
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if "layer_weights" not in n)
    assert len(frozen(wav).layers) == frozen.num_layers


def last_layer_twice(enc: nn.Module, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last hidden state of two forward passes under different random seeds (dropout draws differ)."""
    with torch.no_grad():
        torch.manual_seed(1)
        first = enc(wav).layers[-1]
        torch.manual_seed(2)
        return first, enc(wav).layers[-1]


@pytest.mark.parametrize("name", TINY)
def test_frozen_encoder_stays_in_eval_mode_after_train(name: str) -> None:
    """A frozen encoder (a fusion: each frozen member) stays in eval mode whatever ``train()`` says, so its features
    carry no dropout noise; with LoRA over the frozen backbone the mode follows ``train()`` (adapter dropout runs)."""
    def with_dropout(enc: nn.Module) -> nn.Module:  # tiny YAMLs may set dropout 0: give every nn.Dropout p 0.3
        for m in enc.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.3
        return enc

    frozen = with_dropout(build_tiny(name, freeze=True, adapter=None)).train()
    pinned = [m for m in frozen.modules() if getattr(m, "frozen", False)]
    assert pinned, f"{name}: nothing marked frozen"
    assert all(not sub.training for m in pinned for sub in m.modules())
    if any(isinstance(m, nn.Dropout) for m in frozen.modules()):  # M2D's ViT has none
        probe = with_dropout(build_tiny(name, adapter=None))
        wav = seeded((2, int(probe.sample_rate) // 2), seed=6)
        first, second = last_layer_twice(probe.train(), wav)
        assert not torch.equal(first, second), f"{name}: no dropout in train mode, so this test could not fail"
        first, second = last_layer_twice(frozen, wav)
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    frozen.eval().train()  # eval() and train() again: still pinned
    assert all(not sub.training for m in pinned for sub in m.modules())

    adapted = build_tiny(name, freeze=True).train()  # the YAML's LoRA over the frozen backbone
    assert all(sub.training for sub in adapted.modules())


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("mode", ["lora", "frozen"])
def test_deepaq_tiny_trains_one_step_with_each_encoder(name: str, mode: str) -> None:
    from aqa.config import compose
    from aqa.tasks import build_module

    overrides = [f"encoder={name}"] + (["encoder.freeze=true", "encoder.adapter=null"] if mode == "frozen" else [])
    torch.manual_seed(0)
    module = build_module(compose("deepaq_lora_tiny", overrides)).train()
    sr = int(module.encoder.sample_rate)
    wav = seeded((4, sr // 2), seed=5)
    lengths = torch.tensor([sr // 2, sr // 2, sr // 3, sr // 4])
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    trainable = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    encoder_trainable = [n for n in trainable if n.startswith("encoder.")]
    if mode == "frozen":
        assert all(n.startswith("encoder.layer_weights.") for n in encoder_trainable)  # a fusion's own layer weights
    else:
        assert encoder_trainable and all("lora_" in n or "layer_weights" in n for n in encoder_trainable)
    out = module(wav, lengths)["quality"]
    loss = module.losses["quality"](out, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = [n for n, p in module.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    assert any(n.startswith("heads.") for n in changed)
    if mode == "lora":
        assert any("lora_" in n for n in changed), "LoRA parameters did not train"


@pytest.mark.parametrize("name", ["wavlm_base_plus_tiny", "mert_v1_95m_tiny"])
def test_chunked_inference_keeps_the_frame_grid(name: str) -> None:
    from aqa.encoders.base import chunked_forward

    enc = build_tiny(name, adapter=None).eval()
    sr, hop = enc.sample_rate, enc.downsample_rate
    wav = seeded((2, 3 * sr), 8)
    lengths = torch.tensor([3 * sr, 2 * sr + 777])
    with torch.no_grad():
        whole = enc(wav, lengths)
        enc.max_chunk_s = 1.0
        assert enc.max_chunk_samples == (sr // hop) * hop
        chunked = enc(wav, lengths)
        # the definition: chunk k reads [k * chunk, (k + 1) * chunk + overlap) and keeps all its frames
        chunk, overlap = enc.max_chunk_samples, enc.receptive_field - hop
        piece = wav[:1, chunk : 2 * chunk + overlap]
        second = enc._encode(piece, None)
    assert chunked.lengths.tolist() == whole.lengths.tolist()  # same frame count as one pass
    first_frames = int(frame_lengths(torch.tensor([chunk + overlap]), enc.conv_kernel, enc.conv_stride))
    assert first_frames == chunk // hop
    torch.testing.assert_close(chunked.layers[-1][0, first_frames : 2 * first_frames], second.layers[-1][0])
    # alone vs padded batch also holds with chunking
    with torch.no_grad():
        alone = enc(wav[1:, : 2 * sr + 777])
    for a, b in zip(pooled(alone, 0), pooled(chunked, 1), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
    with torch.no_grad():
        enc.max_chunk_s = 10.0  # longer than the input: a single pass
        same = enc(wav, lengths)
    torch.testing.assert_close(same.layers[-1], whole.layers[-1])
    with pytest.raises(ValueError, match="at least 400 samples"):
        enc(wav[:, :100])
    # a chunk tail shorter than the receptive field gives no frame, as in one pass
    tail = chunked_forward(enc._encode, wav[:1, : chunk + overlap + 100], None, chunk, overlap, enc.min_samples)
    assert tail.lengths.tolist() == frame_lengths(torch.tensor([chunk + overlap + 100]), enc.conv_kernel, enc.conv_stride).tolist()


def test_layer_weighted_sum() -> None:
    from aqa.encoders import LayerWeightedSum

    layers = [torch.randn(2, 5, 4) * (i + 1) for i in range(3)]
    plain = LayerWeightedSum(3, 4)
    torch.testing.assert_close(plain(layers), torch.stack(layers).mean(0))  # equal weights at start
    with torch.no_grad():
        plain.weights.copy_(torch.tensor([0.0, 0.0, 50.0]))
    torch.testing.assert_close(plain(layers), layers[2], atol=1e-5, rtol=0)
    normed = LayerWeightedSum(3, 4, layer_norm=True)
    out = normed(layers)
    want = torch.stack([torch.nn.functional.layer_norm(h, (4,)) for h in layers]).mean(0)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    out.sum().backward()
    assert normed.weights.grad is not None and normed.norms[0].weight.grad is not None
    with pytest.raises(ValueError, match="expects 3 layers"):
        plain(layers[:2])


def test_wavlm_attention_through_modules_matches_transformers() -> None:
    from aqa.encoders.hf import WAVLM_BASE_PLUS, HFEncoder

    arch = {**TINY_ARCH, "hidden_dropout": 0.0, "attention_dropout": 0.0, "feat_proj_dropout": 0.0}
    torch.manual_seed(0)
    enc = HFEncoder(WAVLM_BASE_PLUS.model_cls, WAVLM_BASE_PLUS.config(**arch), 16000, False).eval()
    torch.manual_seed(0)
    original = WAVLM_BASE_PLUS.model_cls(WAVLM_BASE_PLUS.config(**arch)).eval()
    original.load_state_dict(enc.model.state_dict())
    wav = seeded((2, 16000), 9)
    mask = (torch.arange(16000)[None] < torch.tensor([[16000], [9000]])).long()
    with torch.no_grad():
        ours = enc.model(wav * mask, attention_mask=mask).last_hidden_state
        theirs = original(wav * mask, attention_mask=mask).last_hidden_state
    valid = frame_lengths(torch.tensor(9000), enc.conv_kernel, enc.conv_stride)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1, :valid], theirs[1, :valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["mert_v1_330m_tiny", "wavlm_large_tiny"])
def test_pre_norm_models_return_the_final_layer_norm_output_last(name: str) -> None:
    enc = build_tiny(name, adapter=None).eval()
    assert enc.stable_layer_norm
    wav = seeded((1, enc.sample_rate // 2), 10)
    with torch.no_grad():
        out = enc(wav)
        raw = enc.model(normalize_waveform(wav, torch.tensor([wav.shape[1]]), None) if enc.normalize else wav,
                        output_hidden_states=True)
    torch.testing.assert_close(out.layers[-1], raw.last_hidden_state)
    torch.testing.assert_close(out.layers[-1], enc.model.encoder.layer_norm(raw.hidden_states[-1]))
    assert len(out.layers) == enc.num_layers == 3

