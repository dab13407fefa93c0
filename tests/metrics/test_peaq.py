"""PEAQ (BS.1387-1 basic) and the 2f-model: pieces, behaviour, bad input, and conformance items.

The conformance items are read from ``../shared/data/peaq_bs1387`` at test time (their licence allows use for
testing PEAQ only; they must never be copied into the repository) and the tests skip when it is absent.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from aqa.metrics.peaq import (
    MOV_NAMES,
    critical_bands,
    di_to_odg,
    outer_middle_ear_weight,
    peaq,
    peaq_movs_to_di,
    two_f_model,
    two_f_model_from_movs,
)

PEAQ_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "peaq_bs1387"
FS = 48000


def _noise(seconds: float, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, int(seconds * FS))) * 0.05
    return x[0] if channels == 1 else x


# ----------------------------------------------------------------------------------------------- pieces


def test_critical_bands_basic_version() -> None:
    fl, fc, fu = critical_bands()
    assert fl.shape == fc.shape == fu.shape == (109,)
    assert fl[0] == pytest.approx(80.0) and fu[-1] == pytest.approx(18000.0)
    assert np.all((fl < fc) & (fc < fu))
    # quarter-Bark spacing (z = 7 asinh(f/650)), contiguous bands
    z = 7 * np.arcsinh(fl / 650)
    assert np.diff(z) == pytest.approx(np.full(108, 0.25), abs=1e-9)
    assert fu[:-1] == pytest.approx(fl[1:], abs=1e-9)
    # BS.1387-1 Table 6 (3 decimals; the formula agrees within 0.003 Hz, as Kabal notes), incl. the entries an
    # earlier version of this module replaced by values that are not in the standard
    assert fc[0] == pytest.approx(91.708, abs=1e-3)
    assert fu[28] == pytest.approx(933.119, abs=3e-3) and fl[66] == pytest.approx(3853.348, abs=3e-3)
    assert fu[70] == pytest.approx(4616.482, abs=3e-3) and fc[100] == pytest.approx(13296.85, abs=3e-3)


def test_outer_middle_ear_weight() -> None:
    w = outer_middle_ear_weight(np.array([0.0, 1000.0, 3300.0, 15000.0]))
    a_db = 10 * np.log10(w[1:])
    assert w[0] == 0.0
    # A(1 kHz) = -2.184 + 6.5 exp(-0.6 * 2.3^2) - 0.001 = -1.913 dB
    assert a_db[0] == pytest.approx(-2.184 + 6.5 * np.exp(-0.6 * 2.3**2) - 0.001, abs=1e-9)
    assert a_db[1] > 3.0  # resonance around 3.3 kHz
    assert a_db[2] < -10.0  # steep high-frequency roll-off


def test_level_calibration_full_scale_sine_is_92_db() -> None:
    from aqa.metrics.peaq import _frames, _tables

    t = _tables()
    x = np.sin(2 * np.pi * 1019.5 * np.arange(FS) / FS)
    x2 = np.abs(np.fft.rfft(_frames(x[None], 10) * t.window, axis=-1)) ** 2
    assert 10 * np.log10(x2[0, 5].max()) == pytest.approx(92.0, abs=0.01)


def test_bandwidth_frames_follow_the_pseudocode() -> None:
    from aqa.metrics.peaq import _bandwidth

    # BS.1387-1 4.4.1 with the corrections: ZeroThreshold = max test level in bins 921..1023
    x2 = np.zeros((2, 1, 4, 1025))
    x2[1, ..., 921:1024] = 1e-3
    x2[0, :, 0, :500] = 1.0  # ref 10 dB above up to bin 499, test silent below 921 -> BwRef 500, BwTest 0
    x2[0, :, 1, :347] = 1.0  # highest ref line k = 346 -> BwRef 347 > 346 (averaged)
    x2[1, :, 1, :200] = 1.0  # test 5 dB above up to bin 199 -> BwTest 200
    x2[0, :, 2, :346] = 1.0  # BwRef 346: not averaged
    bw_ref, bw_test = _bandwidth(x2)  # frame 3: reference silent, not averaged
    assert bw_ref[0].tolist() == [500.0, 347.0, -1.0, -1.0]
    assert bw_test[0].tolist() == [0.0, 200.0, -1.0, -1.0]


def test_neural_network_bias_point_and_odg_mapping() -> None:
    from aqa.metrics import peaq as p

    # MOVs at their scaling minima -> normalised inputs 0 -> DI = wyb + sum_j wy_j sigmoid(wxb_j)
    di0 = peaq_movs_to_di(p._NN_AMIN)
    expected = -0.307594 + sum(
        wy / (1 + np.exp(-b))
        for wy, b in zip([-3.817048, 4.107138, 4.629582], [-2.518254, 0.654841, -2.207228], strict=True)
    )
    assert di0 == pytest.approx(expected, abs=1e-12)
    assert di_to_odg(0.0) == pytest.approx(-3.98 + 4.2 / 2)
    assert di_to_odg(50.0) == pytest.approx(0.22, abs=1e-9) and di_to_odg(-50.0) == pytest.approx(
        -3.98, abs=1e-9
    )
    # the conformance list's (DI, ODG) pairs all follow the same sigmoid
    for di, odg in [(1.304, -0.676), (-3.029, -3.786), (3.135, 0.045)]:
        assert di_to_odg(di) == pytest.approx(odg, abs=1.5e-3)
    with pytest.raises(ValueError):
        peaq_movs_to_di(np.zeros(5))


# ----------------------------------------------------------------------------------------------- behaviour


def test_identical_input_is_transparent() -> None:
    x = _noise(2.0)
    res = peaq(x, x)
    assert set(res) == {"di", "odg", *MOV_NAMES}
    assert res["odg"] > -0.1 and res["di"] > 3.0
    assert res["AvgModDiff1B"] == 0.0 and res["RmsNoiseLoudB"] == 0.0 and res["MFPDB"] == 0.0


def test_more_noise_is_worse() -> None:
    x = _noise(2.0)
    rng = np.random.default_rng(1)
    n = rng.standard_normal(x.shape)
    odgs = [peaq(x, x + level * n)["odg"] for level in (1e-4, 1e-3, 1e-2)]
    assert odgs[0] > odgs[1] > odgs[2]


def test_layouts_and_stereo() -> None:
    x = _noise(1.5, channels=2)
    y = x + 1e-3 * _noise(1.5, seed=3, channels=2)
    a = peaq(x, y)
    b = peaq(x.T, y.T)  # (T, C)
    assert a == pytest.approx(b)
    # identical channels: stereo equals mono
    m = peaq(x[0], y[0])
    s = peaq(np.stack([x[0], x[0]]), np.stack([y[0], y[0]]))
    assert s == pytest.approx(m)
    # a mono test against a stereo reference is played on both channels
    assert peaq(np.stack([x[0], x[0]]), y[0]) == pytest.approx(m)
    # integer PCM is scaled by its full scale
    xi = np.round(x[0] * 32767).astype(np.int16)
    assert peaq(xi, xi)["di"] == pytest.approx(peaq(xi / 32768.0, xi / 32768.0)["di"])


def test_mismatched_lengths_are_cut_with_a_warning() -> None:
    x = _noise(1.5)
    with pytest.warns(UserWarning, match="using the first"):
        res = peaq(x, x[: len(x) - 100])
    assert res == pytest.approx(peaq(x[: len(x) - 100], x[: len(x) - 100]))


def test_other_sample_rates_are_resampled() -> None:
    x = _noise(1.5)[: int(1.5 * 44100)]
    res = peaq(x, x, sample_rate=44100)
    assert res["di"] > 3.0


@pytest.mark.parametrize(
    ("ref", "deg", "match"),
    [
        (np.zeros(0), np.zeros(0), "empty"),
        (np.full(FS, np.nan), np.zeros(FS), "NaN"),
        (np.zeros(FS * 2), _noise(2.0), "silent"),
        (_noise(0.3), _noise(0.3), "too short"),
        (np.zeros((3, 4, 5)), np.zeros((3, 4, 5)), "expected"),
        (
            _noise(1.0, channels=2).repeat(2, axis=0)[:3],
            _noise(1.0, channels=2).repeat(2, axis=0)[:3],
            "mono or stereo",
        ),
    ],
)
def test_bad_input_raises_value_error(ref: np.ndarray, deg: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        peaq(ref, deg)


# ----------------------------------------------------------------------------------------------- 2f-model


def test_two_f_model_formula() -> None:
    # Kastner & Herre (WASPAA 2019): MMS = 56.1345 / (1 + (-0.0282 x - 0.8628)^2) - 27.1451 ADB + 86.3515
    amd, adb = 10.0, 1.5
    raw = 56.1345 / (1 + (-0.0282 * amd - 0.8628) ** 2) - 27.1451 * adb + 86.3515
    assert two_f_model_from_movs(amd, adb, clip=False) == pytest.approx(raw)
    assert two_f_model_from_movs(amd, adb) == pytest.approx(np.clip(raw, 0, 100))
    assert two_f_model_from_movs(0.0, 0.0) == 100.0  # raw 118.5 is clipped
    assert two_f_model_from_movs(0.0, 5.0) == 0.0
    # worse (larger) ADB and AvgModDiff1 lower the score
    assert (
        two_f_model_from_movs(5.0, 1.0) > two_f_model_from_movs(30.0, 1.0) > two_f_model_from_movs(30.0, 2.0)
    )


def test_two_f_model_pair() -> None:
    x = _noise(2.0)
    y = x + 0.01 * _noise(2.0, seed=5)
    res = two_f_model(x, y)
    assert set(res) == {"mms", "mms_raw", "AvgModDiff1B", "ADBB"}
    assert res["mms"] == pytest.approx(two_f_model_from_movs(res["AvgModDiff1B"], res["ADBB"]))
    assert 0.0 <= res["mms"] <= 100.0
    assert two_f_model(x, x)["mms"] == 100.0


# ----------------------------------------------------------------------------------------------- conformance

# Measured delta DI of this implementation on the shared items (basic version). The target is |delta DI| < 0.02.
# Five files of the shared copy (the same bytes as jdeeny/peaq-rs, refs/components) are damaged: runs of exact
# digital zero in both channels, 512-sample multiples starting at 4096-byte file offsets (zeroed disk blocks, not
# codec output; the other file of the pair has signal there). The published DI values are for the intact files,
# so those items cannot match; positions are sample index + run length (48 kHz).
# On the intact items this module now reproduces GstPEAQ 0.6 (Holters, DAFx-15; its published table in brackets)
# within 0.002: gcodcla passes, the other five miss by +0.04..+0.15, all positive, as GstPEAQ does. Kabal's
# PQevalAudio does slightly worse (RMSE 0.23 over 16 items): no open implementation is conforming. No scale or
# offset on any one or two MOVs brings all six intact items within 0.02 (best pair: max |delta| 0.037).
# Moving both signals by up to 768 samples (frame phase) alone changes DI by up to +-0.05 here.
_DAMAGED = "conformance file damaged: zero runs at samples"
_KNOWN_MISSES: dict[str, str] = {
    "acodsna": f"measured dDI -0.855; {_DAMAGED} 481269+4608 and 539637+512 of acodsna",
    "bcodtri": (
        f"measured dDI -1.113; {_DAMAGED} 80373+1024, 280565+1536, 861685+512 of bcodtri "
        "and 589301+512 of the reference breftri"
    ),
    "ecodsmg": f"measured dDI +0.079; {_DAMAGED} 245749+512 of ecodsmg",
    "fcodtr1": "measured dDI +0.049 (GstPEAQ: +0.049)",
    "fcodtr3": "measured dDI +0.151 (GstPEAQ: +0.151)",
    "icodsna": "measured dDI +0.068 (GstPEAQ: +0.068)",
    "kcodsme": "measured dDI +0.041 (GstPEAQ: +0.040)",
    "mcodcla": "measured dDI +0.058 (GstPEAQ: +0.058)",
    "ncodsfe": f"measured dDI -2.121; {_DAMAGED} 14837+1024 and 74741+512 of ncodsfe",
}


def _golden_rows() -> list:
    path = PEAQ_DIR / "golden.csv"
    if not path.is_file():
        return [pytest.param(None, id="golden-absent")]
    params = []
    with path.open() as f:
        for row in csv.DictReader(f):
            name = Path(row["test"]).stem
            marks = (
                [pytest.mark.xfail(strict=True, raises=AssertionError, reason=_KNOWN_MISSES[name])]
                if name in _KNOWN_MISSES
                else []
            )
            params.append(pytest.param(row, id=name, marks=marks))
    return params


@pytest.mark.parametrize("row", _golden_rows())
def test_conformance_di(row: dict | None) -> None:
    if row is None:
        pytest.skip(f"PEAQ conformance items not found at {PEAQ_DIR} (../shared beside the checkout)")
    from aqa.audio import load_audio

    ref, sr_r = load_audio(PEAQ_DIR / row["reference"])
    deg, sr_t = load_audio(PEAQ_DIR / row["test"])
    assert sr_r == sr_t == FS
    res = peaq(ref, deg, sr_r)
    err = res["di"] - float(row["DI_basic"])
    assert abs(err) < 0.02, f"DI {res['di']:.3f} vs {row['DI_basic']} (delta {err:+.3f})"
