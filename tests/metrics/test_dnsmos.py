"""aqa's DNSMOS (aqa.metrics.dnsmos: sessions kept, windows batched) against speechmos.dnsmos.run on real clips."""

import numpy as np
import pytest

from aqa.metrics.dnsmos import RATE, WINDOW_S, windows

pytest.importorskip("speechmos.dnsmos", reason="dnsmos needs the metrics extra (speechmos)")
pytest.importorskip("onnxruntime", reason="dnsmos needs the metrics extra (onnxruntime)")


# int(floor(T) - 9.01) + 1 windows (speechmos): 10.5 s -> 1, 11 s -> 2, 12 s -> 3
@pytest.mark.parametrize("seconds, count", [(0.3, 1), (2.5, 1), (9.01, 1), (10.5, 1), (11.0, 2), (11.99, 2), (12.0, 3)])
def test_windows_follow_speechmos_tiling_and_hops(seconds, count):
    x = np.arange(int(seconds * RATE), dtype=np.float32) / 1e6
    w = windows(x)
    assert w.shape == (count, int(WINDOW_S * RATE)) and w.dtype == np.float32
    length = x.size
    np.testing.assert_array_equal(w[0, :length][: w.shape[1]], x[: w.shape[1]])  # starts at the clip's start
    if length < w.shape[1]:  # a short clip is repeated from its start
        np.testing.assert_array_equal(w[0, length : 2 * length][: w.shape[1] - length], x[: w.shape[1] - length])
    if count > 1:  # 1 s hop
        np.testing.assert_array_equal(w[1], x[RATE : RATE + w.shape[1]])


def _real_clips(shared_data, spec) -> list[np.ndarray]:
    from aqa.audio import load_audio, resample_np, to_mono_np

    clips = []
    for name, seconds in spec:
        path = shared_data / "clean" / name
        if not path.is_file():
            pytest.skip(f"{path} not found")
        x, sr = load_audio(path)
        clips.append(np.clip(resample_np(to_mono_np(x), sr, RATE)[: int(seconds * RATE)], -1, 1).astype(np.float32))
    return clips


def _assert_equals_speechmos(clips: list[np.ndarray], batch: int) -> list[dict[str, float]]:
    import speechmos.dnsmos

    from aqa.metrics.dnsmos import score_batch

    ours = score_batch(clips, batch=batch)
    for clip, got in zip(clips, ours, strict=True):
        want = speechmos.dnsmos.run(clip, RATE)
        for key in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos"):
            assert got[key] == pytest.approx(float(want[key]), abs=1e-4), key
    return ours


def test_batched_dnsmos_equals_speechmos_on_real_clips(shared_data):
    # 2.5 s of speech and 5.3 s of trumpet (44.1 kHz stereo: down-mixed, resampled), each tiled to one window
    clips = _real_clips(shared_data, [("198-209-0000.hq.ogg", 2.5), ("sorohanro_-_solo-trumpet-06.hq.ogg", 5.3)])
    ours = _assert_equals_speechmos(clips, batch=2)
    assert ours[0]["ovrl_mos"] != pytest.approx(ours[1]["ovrl_mos"], abs=1e-3)  # the clips are told apart


@pytest.mark.slow
def test_batched_dnsmos_equals_speechmos_on_a_clip_of_three_windows(shared_data):
    # 12.5 s of speech: windows at 0, 1 and 2 s, split over two batches, averaged as speechmos averages them
    _assert_equals_speechmos(_real_clips(shared_data, [("5703-47212-0000.hq.ogg", 12.5)]), batch=2)
