"""TMK+PDQF without any video: the value format, hostile values, the scores, ffmpeg's frame
choice and the accumulator, on values and frames the tests build themselves.

Independent references used here: Python's ``base64`` (ThreatExchange's Java client encodes
with ``java.util.Base64``, the same standard alphabet with padding), the Bessel series (the
format's 32 weights), direct evaluation of the kernel's trigonometric polynomial, and plain
loops over repeated frames (the geometric-series shortcut).
"""

from __future__ import annotations

import base64
import struct
import tracemalloc
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from uploadscan import InvalidHashError
from uploadscan.hashing import _tmk_format as fmt
from uploadscan.hashing._tmk import TmkHashType
from uploadscan.hashing._tmk_accumulator import TmkAccumulator, _TmkSums
from uploadscan.hashing._tmk_bars import frame_bars
from uploadscan.hashing._tmk_rate import RateConverter
from uploadscan.hashing._tmk_score import _kernel, level1_score, level2_score, two_level_score
from uploadscan.media._frames import rgb_luma
from uploadscan.testing import check_hash_type

HEADER = struct.Struct("<4s4s4siiiii")
TMK = TmkHashType()


def _frames(count: int, seed: int = 1) -> npt.NDArray[np.uint8]:
    """Smoothly changing random RGB 64x64 frames."""
    rng = np.random.default_rng(seed)
    keys = rng.uniform(0, 255, size=(count // 10 + 2, 64, 64, 3))
    t = np.arange(count) / 10
    i = t.astype(int)
    w = (t - i)[:, None, None, None]
    frames: npt.NDArray[np.uint8] = ((1 - w) * keys[i] + w * keys[i + 1]).astype(np.uint8)
    return frames


def _hash(frames: npt.NDArray[np.uint8], fps: float = 30.0) -> fmt.TmkHash:
    acc = TmkAccumulator(stream_frame_rate=fps)
    for index, frame in enumerate(frames):
        acc.add_frame(index / fps, frame, duration=1 / fps)
    return acc.finish()


FRAMES = _frames(120)
VALUE = _hash(FRAMES)
DATA = VALUE.to_bytes()


# ----------------------------------------------------------------------------- the format


def test_a_value_round_trips_through_bytes_and_text() -> None:
    assert len(DATA) == fmt.REFERENCE_TMK_BYTES == 263_344
    assert fmt.parse_tmk(DATA) == VALUE and fmt.parse_tmk(DATA).to_bytes() == DATA
    text = VALUE.to_text()
    assert text == "TMK1FVECPDQF|" + base64.b64encode(DATA[12:]).decode()
    assert len(text) == 351_125
    assert fmt.decode_text(text) == DATA
    assert TMK.validate(f"  {text}\n") == text
    assert TMK.to_bytes(text) == DATA and TMK.from_bytes(DATA) == text
    assert VALUE.is_reference_compatible() and not VALUE.cos_features.flags.writeable
    assert fmt.parse_tmk(bytearray(DATA)) == fmt.parse_tmk(memoryview(DATA)) == VALUE


def test_the_type_passes_the_plugin_contract() -> None:
    check_hash_type(TMK)


def test_fourier_coefficients_are_poullot_bessel_weights() -> None:
    """a_0 = (I_0(b) - e^-b) / (2 sinh b), a_j = I_j(b) / sinh b with b = 32."""
    beta = 32.0

    def bessel_i(order: int, x: float) -> float:
        term = (x / 2) ** order / float(np.prod(np.arange(1, order + 1, dtype=np.float64)))
        total, k = 0.0, 0
        while term > 1e-30 * max(total, 1e-300):
            total += term
            k += 1
            term *= (x / 2) ** 2 / (k * (k + order))
        return total

    expected = [(bessel_i(0, beta) - np.exp(-beta)) / (2 * np.sinh(beta))]
    expected += [bessel_i(j, beta) / np.sinh(beta) for j in range(1, 32)]
    np.testing.assert_allclose(fmt.FOURIER_COEFFICIENTS, expected, rtol=1e-6)


def _with_header(data: bytes, **changes: object) -> bytes:
    fields = dict(magic=b"TMK1", kind=b"FVEC", algo=b"PDQF", fps=15, p=4, c=32, d=256, n=100)
    fields.update(changes)
    return HEADER.pack(*fields.values()) + data[HEADER.size :]


def _poke(data: bytes, index: int, value: float) -> bytes:
    return data[:index] + struct.pack("<f", value) + data[index + 4 :]


COEFFS = 32 + 16
PURE = COEFFS + 128
COS = PURE + 1024
SIN = COS + 4 * 32 * 256 * 4


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"", "header"),
        (lambda d: d[:31], "header"),
        (lambda d: d[:32], "implies"),
        (lambda d: d[:-1], "implies"),
        (lambda d: d + b"\0", "implies"),
        (lambda d: d + d, "implies"),
        (lambda d: b"TMK2" + d[4:], "not a TMK"),
        (lambda d: d[:4] + b"FEAT" + d[8:], "not a TMK"),
        (lambda d: d[:8] + b"PDQ2" + d[12:], "algorithm"),
        (lambda d: _with_header(d, fps=0), "frames per second"),
        (lambda d: _with_header(d, fps=-15), "frames per second"),
        (lambda d: _with_header(d, p=-1), "period count"),
        (lambda d: _with_header(d, p=2**31 - 1), "period count"),
        (lambda d: _with_header(d, c=2**31 - 1), "Fourier coefficient count"),
        (lambda d: _with_header(d, c=-5), "Fourier coefficient count"),
        (lambda d: _with_header(d, d=255), "dimension"),
        (lambda d: _with_header(d, n=-1), "negative"),
        (lambda d: _with_header(d, p=5), "implies"),
        (lambda d: d[:32] + struct.pack("<i", 0) + d[36:], "period out of range"),
        (lambda d: d[:32] + struct.pack("<i", -2731) + d[36:], "period out of range"),
        (lambda d: d[:32] + struct.pack("<i", 2**31 - 1) + d[36:], "period out of range"),
        (lambda d: _poke(d, COEFFS, float("nan")), "NaN"),
        (lambda d: _poke(d, COEFFS + 4, -0.5), "negative"),
        (lambda d: _poke(d, PURE + 40, float("inf")), "NaN or infinity"),
        (lambda d: _poke(d, COS + 4000, float("-inf")), "NaN or infinity"),
        (lambda d: _poke(d, SIN + 8, float("nan")), "NaN or infinity"),
        (lambda d: _poke(d, len(d) - 4, float("nan")), "NaN or infinity"),
    ],
)
def test_hostile_files_are_refused(mutate: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(InvalidHashError, match=message):
        fmt.parse_tmk(mutate(DATA))
    with pytest.raises(InvalidHashError):
        TMK.from_bytes(mutate(DATA))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "12 header characters"),
        ("TMK1FVECPDQF", "12 header characters"),
        ("TMK1FVECPDQF:AAAA", "12 header characters"),
        ("TMK1FVECPDQ\u00e9|AAAA", "ASCII"),
        ("TMK1FVECPDQF|AAA", "base64"),
        ("TMK1FVECPDQF|AA AA", "base64"),
        ("TMK1FVECPDQF|AA*A", "base64"),
        ("TMK1FVECPDQF|" + "A" * (fmt.MAX_TMK_BYTES * 2), "over"),
        ("TMK1FVECPDQF|AAAA", "header alone"),
        ("f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22", "header"),
    ],
)
def test_hostile_texts_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidHashError, match=message):
        TMK.validate(text)


def test_a_valid_text_with_a_bad_file_is_refused() -> None:
    text = VALUE.to_text()
    with pytest.raises(InvalidHashError, match="not a TMK"):
        TMK.validate("TMK2" + text[4:])
    with pytest.raises(InvalidHashError, match="implies"):
        TMK.validate(text[:-8])
    with pytest.raises(InvalidHashError):
        TMK.validate(b"TMK1FVECPDQF|AAAA")


def test_huge_headers_allocate_nothing() -> None:
    """A header claiming gigabytes of features is refused before any array is read."""
    tracemalloc.start()
    for p, c in ((16, 64), (2**31 - 1, 2**31 - 1), (16, 2**20)):
        with pytest.raises(InvalidHashError):
            fmt.parse_tmk(_with_header(b"\0" * 1024 + DATA[: HEADER.size], p=p, c=c))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000


def test_generic_files_parse_but_cannot_be_listed() -> None:
    """The format is generic in P and C; a value no upload's can be compared with, or of a
    video without frames, is refused for lists."""
    body = struct.pack("<2i", 5, 7) + struct.pack("<3f", 1.0, 0.5, 0.25)
    body += b"\0" * (4 * 256 + 8 * 2 * 3 * 256)
    small = _with_header(b"\0" * HEADER.size + body, p=2, c=3, n=0)
    parsed = fmt.parse_tmk(small)
    assert parsed.periods == (5, 7) and not parsed.is_reference_compatible()
    with pytest.raises(InvalidHashError, match="reference's parameters"):
        TMK.check_listable(parsed.to_text())
    with pytest.raises(InvalidHashError, match="empty or uniform"):
        TMK.check_listable(TmkAccumulator().finish().to_text())
    TMK.check_listable(VALUE.to_text())


def test_short_form_names_the_file_by_its_sha256() -> None:
    import hashlib

    short = TMK.short_form(VALUE.to_text())
    assert short == "TMK1FVECPDQF|sha256:" + hashlib.sha256(DATA).hexdigest()[:16]


# ----------------------------------------------------------------------------- scores


def test_kernel_equals_the_trigonometric_polynomial() -> None:
    """Horner over the roots of unity against direct evaluation, harmonics >= T included."""
    rng = np.random.default_rng(4)
    for period, harmonics in ((2731, 32), (11, 32), (5, 7)):
        spectrum = rng.normal(size=harmonics) + 1j * rng.normal(size=harmonics)
        d = np.arange(period)[:, None]
        j = np.arange(harmonics)[None, :]
        angle = 2 * np.pi * d * j / period
        direct = (spectrum.real * np.cos(angle) - spectrum.imag * np.sin(angle)).sum(axis=1)
        np.testing.assert_allclose(_kernel(spectrum, period), direct, atol=1e-9)


def test_self_scores_are_one() -> None:
    score = two_level_score(VALUE, VALUE)
    assert score.level1 == pytest.approx(1.0, abs=1e-6)
    assert score.level2 == pytest.approx(1.0, abs=1e-6)
    assert score.offset == 0


def _luma_value(frames: npt.NDArray[np.float32]) -> fmt.TmkHash:
    acc = TmkAccumulator(stream_frame_rate=15.0, single_stream=True)
    for index, frame in enumerate(frames):
        acc.add_frame(index / 15, frame, duration=1 / 15)
    return acc.finish()


def test_offset_sign_and_size() -> None:
    """``b`` is ``a`` delayed by 37 frames (uniform frames have zero PDQF: an exact shift).

    32 harmonics resolve about T/64 frames, and the reference's separate normalisation of
    cos and sin bends the phase on videos much shorter than the period: this exact 2.5 s
    delay of a 20 s video scores about 0.69, as the reference's would.
    """
    rng = np.random.default_rng(7)
    frames = rng.uniform(0, 255, size=(300, 64, 64)).astype(np.float32)
    blank = np.full((37, 64, 64), 100.0, dtype=np.float32)
    a, b = _luma_value(frames), _luma_value(np.concatenate([blank, frames]))
    forward, backward = level2_score(a, b), level2_score(b, a)
    for period, offset in zip(fmt.PERIODS, forward.period_offsets, strict=True):
        assert abs((offset - period) + 37) <= period / 64
    assert -37 - forward.period / 64 <= forward.offset < 0 < backward.offset
    assert forward.offset_seconds == forward.offset / 15
    assert forward.score == pytest.approx(backward.score, abs=1e-9)
    assert forward.score < 0.9


def test_incompatible_values_are_refused_and_empty_ones_score_zero() -> None:
    other = fmt.TmkHash(
        frames_per_second=30,
        periods=VALUE.periods,
        fourier_coefficients=VALUE.fourier_coefficients,
        frame_count=VALUE.frame_count,
        pure_average=VALUE.pure_average,
        cos_features=VALUE.cos_features,
        sin_features=VALUE.sin_features,
    )
    with pytest.raises(InvalidHashError, match="fps"):
        two_level_score(VALUE, other)
    empty = TmkAccumulator().finish()
    assert empty.frame_count == 0
    assert level1_score(empty, VALUE) == 0.0 and level2_score(empty, VALUE).score == 0.0


# ----------------------------------------------------------------------------- mirrors


@pytest.mark.parametrize(
    ("name", "transform"),
    [
        ("hflip", lambda f: f[:, :, ::-1]),
        ("vflip", lambda f: f[:, ::-1, :]),
        ("rotate180", lambda f: f[:, ::-1, ::-1]),
        ("transpose", lambda f: np.swapaxes(f, 1, 2)),
        ("rotate90", lambda f: np.rot90(f, k=-1, axes=(1, 2))),
        ("rotate270", lambda f: np.rot90(f, k=1, axes=(1, 2))),
        ("antitranspose", lambda f: np.rot90(f, k=2, axes=(1, 2)).swapaxes(1, 2)),
    ],
)
def test_mirroring_the_value_equals_hashing_mirrored_frames(
    name: str, transform: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]]
) -> None:
    """TMK is linear in PDQF, and mirroring a frame flips signs of PDQF coefficients."""
    flips = fmt.DIHEDRAL[name]
    derived = fmt.transform_hash(VALUE, flip_x=flips[0], flip_y=flips[1], transpose=flips[2])
    actual = _hash(np.ascontiguousarray(transform(FRAMES)))
    np.testing.assert_allclose(derived.cos_features, actual.cos_features, atol=2e-6)
    np.testing.assert_allclose(derived.sin_features, actual.sin_features, atol=2e-6)
    np.testing.assert_allclose(derived.pure_average, actual.pure_average, rtol=1e-5, atol=1e-3)
    assert two_level_score(derived, actual).level2 > 0.99999


def test_mirror_changes_the_value_and_undoes_itself() -> None:
    assert two_level_score(VALUE, fmt.mirror_hash(VALUE)).level1 < 0.9
    assert fmt.mirror_hash(fmt.mirror_hash(VALUE)) == VALUE


# ----------------------------------------------------------------------------- ffmpeg -r 15


def test_thirty_fps_keeps_the_first_four_frames_then_every_other() -> None:
    rate = RateConverter(15, 30.0, single_stream=False)
    kept = [i for i in range(40) if rate.push(i / 30, 1 / 30)[1]]
    assert kept[:8] == [0, 1, 2, 3, 5, 7, 9, 11]


def test_ntsc_frames_last_one_output_frame() -> None:
    """29.97 fps packets last lrintf(0.5005) = 1 output frame, 30 fps ones lrintf(0.5) = 0:
    NTSC keeps frames 0-4 before lagging."""
    rate = RateConverter(15, 30000 / 1001, single_stream=False)
    kept = [i for i in range(12) if rate.push(i * 1001 / 30000, 1001 / 30000)[1]]
    assert kept[:6] == [0, 1, 2, 3, 4, 6]


def test_a_huge_gap_is_skipped_like_ffmpeg() -> None:
    rate = RateConverter(15, 30.0, single_stream=False)
    assert rate.push(0.0, 1 / 30)[:2] == (0, 1)
    assert rate.push(10**7, 1 / 30) == (0, 0, False)
    assert rate.push(1 / 30, 1 / 30)[:2] == (0, 1)


# ----------------------------------------------------------------------------- accumulator


def test_dropped_frames_are_never_resized() -> None:
    calls: list[int] = []

    def thunk(index: int) -> Callable[[], npt.NDArray[np.uint8]]:
        def resize() -> npt.NDArray[np.uint8]:
            calls.append(index)
            frame: npt.NDArray[np.uint8] = FRAMES[index]
            return frame

        return resize

    acc = TmkAccumulator(stream_frame_rate=30.0)
    for index in range(len(FRAMES)):
        acc.add_frame(index / 30, thunk(index), duration=1 / 30)
    lazy = acc.finish()
    assert calls[:6] == [0, 1, 2, 3, 5, 7]
    assert len(calls) == lazy.frame_count == 62
    assert lazy == VALUE


def test_runs_of_copies_equal_repeated_frames() -> None:
    """The geometric-series shortcut for a frame written n times, far into the video."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(5, 256))
    counts = np.array([1, 7, 1, 40, 3], dtype=np.int64)
    starts = np.concatenate([[20000], 20000 + np.cumsum(counts)[:-1]]).astype(np.int64)
    runs = _TmkSums()
    runs.add(features, starts, counts)
    single = _TmkSums()
    rows = np.repeat(features, counts, axis=0)
    single.add(rows, np.arange(starts[0], starts[0] + counts.sum()), np.ones(len(rows), np.int64))
    np.testing.assert_allclose(runs.cos, single.cos, atol=1e-9)
    np.testing.assert_allclose(runs.sin, single.sin, atol=1e-9)
    np.testing.assert_allclose(runs.pure, single.pure, atol=1e-9)


def test_irregular_and_absurd_timestamps() -> None:
    rng = np.random.default_rng(5)
    times = np.cumsum(rng.uniform(0.005, 0.2, size=300))
    acc = TmkAccumulator(stream_frame_rate=25.0)
    for index, t in enumerate(times):
        acc.add_frame(float(t), FRAMES[index % len(FRAMES)])
    assert abs(acc.finish().frame_count - times[-1] * 15) < 4
    # Hostile timestamps: huge jumps are skipped as ffmpeg skips them, never expanded.
    acc = TmkAccumulator(stream_frame_rate=30.0)
    for index, t in enumerate([0.0, 1e300, -1e300, 1e7, 5e6, 0.5, 1e-300, 1.0]):
        acc.add_frame(t, FRAMES[index], duration=1e300 if index % 2 else None)
    assert acc.finish().frame_count < 100


def test_memory_is_bounded() -> None:
    """Ten minutes of 30 fps frames, fed as callables, with bar detection on."""
    frame = FRAMES[0]
    acc = TmkAccumulator(stream_frame_rate=30.0, trim_bars=True)
    tracemalloc.start()
    for index in range(30 * 600):
        acc.add_frame(index / 30, lambda: frame, duration=1 / 30, thumbnail=lambda: frame[:, :, 0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert acc.finish().frame_count == 15 * 600 + 2
    assert peak < 10_000_000


def test_undecoded_frames_are_interpolated() -> None:
    """Undecoded frames get the time-weighted blend of their decoded neighbours: exact when
    the picture changes linearly, as between this helper's key frames."""
    acc = TmkAccumulator(stream_frame_rate=30.0)
    for index, frame in enumerate(FRAMES):
        skipped = index % 2 == 1 and index % 10 != 9
        acc.add_frame(index / 30, None if skipped else frame, duration=1 / 30)
    sparse = acc.finish()
    assert acc.frames_missing == 48
    assert two_level_score(VALUE, sparse).level2 > 0.9999


def test_will_keep_predicts_without_changing_state() -> None:
    acc = TmkAccumulator(stream_frame_rate=30.0)
    predicted, actual = [], []
    for index in range(40):
        predicted += [acc.will_keep(index / 30, 1 / 30), acc.will_keep(index / 30, 1 / 30)]
        actual.append(acc.add_frame(index / 30, FRAMES[index], duration=1 / 30) > 0)
    assert predicted[::2] == actual and predicted[1::2] == actual


def test_misuse_is_refused() -> None:
    acc = TmkAccumulator()
    with pytest.raises(TypeError, match="64x64"):
        acc.add_frame(0.0, np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(TypeError, match="finite"):
        acc.add_frame(float("nan"), FRAMES[0])
    acc.finish()
    with pytest.raises(TypeError, match="after finish"):
        acc.add_frame(1.0, FRAMES[0])


# ----------------------------------------------------------------------------- bars


def _letterboxed(frames: npt.NDArray[np.uint8], dark_first: int = 0) -> npt.NDArray[np.float32]:
    """Thumbnails with the picture in the middle 75% of the rows, black bars above and
    below; the first ``dark_first`` are nearly black (a fade-in)."""
    luma = rgb_luma(frames)
    boxed = np.zeros((len(frames), 128, 128), dtype=np.float32)
    rows = np.linspace(0, 63, 96).round().astype(int)
    cols = np.linspace(0, 63, 128).round().astype(int)
    boxed[:, 16:112, :] = luma[:, rows][:, :, cols]
    boxed[:dark_first, 16:112] *= 0.05
    return boxed


def test_bars_are_decided_per_video_despite_a_dark_intro() -> None:
    frames = _frames(300)
    thumbs = _letterboxed(frames, dark_first=90)
    acc = TmkAccumulator(stream_frame_rate=30.0, trim_bars=True)
    for index, frame in enumerate(frames):
        acc.add_frame(index / 30, frame, duration=1 / 30, thumbnail=thumbs[index])
    acc.finish()
    box = acc.content_box
    assert box is not None and (box.top, box.bottom, box.left, box.right) == (0.125, 0.875, 0, 1)
    assert acc.trimmed_hash is not None and acc.trimmed_hash.frame_count == acc.frames_out
    assert not frame_bars(thumbs[10]).confident  # dark frames do not vote


def test_no_bars_means_no_trimmed_value_and_no_more_thumbnails() -> None:
    frames = _frames(200)
    acc = TmkAccumulator(stream_frame_rate=30.0, trim_bars=True)
    for index, frame in enumerate(frames):
        acc.add_frame(index / 30, frame, thumbnail=rgb_luma(frame))
    acc.finish()
    assert acc.content_box is None and acc.trimmed_hash is None
    assert not acc.wants_thumbnails
