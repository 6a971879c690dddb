"""Video hashing against vPDQ's reference output, on the ThreatExchange sample videos and the
synthetic transformed copies; plus limits and hostile input."""

from __future__ import annotations

import bisect
import contextlib
import fractions
import io
import itertools
import time
from functools import cache
from pathlib import Path

import av
import numpy as np
import pdqhash
import pytest
from PIL import Image

from uploadscan import (
    CorruptMediaError,
    MediaError,
    MediaTooLargeError,
    UnsupportedMediaError,
)
from uploadscan._video_rule import compare_videos
from uploadscan.hashing._pdq import PdqVideo as VideoHashes
from uploadscan.hashing._pdq import hash_video
from uploadscan.hashing._result import FrameHash
from uploadscan.hashing._vpdq import read_vpdq
from uploadscan.media._limits import DEFAULT_LIMITS, Limits

VIDEOS = "threatexchange/tmk/sample-videos"
HASHES = "threatexchange/vpdq/sample-hashes"
SYNTHETIC = "synthetic-videos"
COMPUTED = "expected_computed/vpdq"
SAMPLE_NAMES = [
    "chair-19-sd-bar",
    "chair-20-sd-bar",
    "chair-22-sd-grey-bar",
    "chair-22-sd-sepia-bar",
    "chair-22-with-large-logo-bar",
    "chair-22-with-small-logo-bar",
    "chair-orig-22-sd-bar",
    "doorknob-hd-no-bar",
    "pattern-hd-no-bar",
    "pattern-longer-no-bar",
    "pattern-sd-grey-bar",
    "pattern-sd-with-large-logo-bar",
    "pattern-sd-with-small-logo-bar",
    "test-padded-dimensions",
]
MIRROR = 5  # index of the left-right mirror among _pdq's dihedral variants


def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@cache
def _hash(path: str, trim: bool = True, dihedral: bool = False) -> VideoHashes:
    media_type = "video/webm" if path.endswith(".webm") else "video/mp4"
    data = Path(path).read_bytes()
    return hash_video(data, media_type, DEFAULT_LIMITS, trim_borders=trim, dihedral=dihedral)


def _sample(data_dir: Path, name: str, trim: bool = True) -> VideoHashes:
    return _hash(str(data_dir / VIDEOS / f"{name}.mp4"), trim)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_frames_agree_with_vpdq_reference(data_dir: Path, name: str) -> None:
    """Each hashed frame is within 31 bits of vPDQ's hash of the frame at that timestamp."""
    reference = read_vpdq(data_dir / HASHES / f"{name}.txt")
    times = [f.timestamp for f in reference]
    video = _sample(data_dir, name, trim=False)
    compared = 0
    for frame in video.frames:
        k = bisect.bisect_left(times, frame.timestamp)
        nearest = min(
            (j for j in (k - 1, k) if 0 <= j < len(times)),
            key=lambda j: abs(times[j] - frame.timestamp),
        )
        assert abs(times[nearest] - frame.timestamp) < 0.02
        expected = reference[nearest]
        if expected.quality >= 50:
            assert _distance(frame.pdq, expected.pdq) <= 31, (frame, expected)
            compared += 1
    assert compared >= 2


@pytest.mark.parametrize("name", ["chair-19-sd-bar", "pattern-hd-no-bar"])
def test_keyframes_plus_sampling_cover_time_cheaply(data_dir: Path, name: str) -> None:
    reference = read_vpdq(data_dir / HASHES / f"{name}.txt")
    video = _sample(data_dir, name, trim=False)
    times = sorted({f.timestamp for f in video.frames})
    assert times[0] == 0.0
    # keyframes every 2 s, one sample between each: no gap over the 1 s interval (dedup may
    # drop a frame, which leaves at most DEFAULT_MAX_SPAN)
    assert max(b - a for a, b in itertools.pairwise(times)) <= 2.0 + 1e-6
    assert video.frames_decoded < len(reference) / 2
    assert video.duration == pytest.approx(reference[-1].timestamp, abs=0.1)
    assert all(f.quality >= 50 for f in video.frames)


LISTS = {"chair": "chair-orig-22-sd-bar", "pattern": "pattern-hd-no-bar"}
EXPECTED_MATCH = {
    name: (None if "large-logo" in name else next((k for k in LISTS if name.startswith(k)), None))
    for name in SAMPLE_NAMES
}


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_videos_match_their_own_list_only(data_dir: Path, name: str) -> None:
    video = _sample(data_dir, name)
    verdicts = {}
    for family, list_name in LISTS.items():
        listed = read_vpdq(data_dir / HASHES / f"{list_name}.txt")
        verdicts[family] = compare_videos(listed, video.frames)
    expected = EXPECTED_MATCH[name]
    for family, result in verdicts.items():
        if family == expected:
            assert result.is_match, (family, result.listed_coverage)
        elif "large-logo" in name and name.startswith(family):
            assert result.listed_coverage < 0.8  # the large logo hides the picture: a miss
        else:
            assert result.listed_coverage == 0.0, (family, result.listed_coverage)


@pytest.mark.parametrize(
    ("name", "list_name"),
    [
        ("pattern-sd-grey-bar", "pattern-hd-no-bar"),
        ("pattern-sd-with-small-logo-bar", "pattern-hd-no-bar"),
        ("chair-19-sd-bar", "chair-orig-22-hd-no-bar"),
        ("chair-orig-22-sd-bar", "chair-orig-22-hd-no-bar"),
    ],
)
def test_bars_are_trimmed_to_match_a_list_without_them(
    data_dir: Path, name: str, list_name: str
) -> None:
    listed = read_vpdq(data_dir / HASHES / f"{list_name}.txt")
    assert compare_videos(listed, _sample(data_dir, name, trim=False).frames).is_match is False
    assert compare_videos(listed, _sample(data_dir, name).frames).is_match


def _synthetic(data_dir: Path, file: str, dihedral: bool = False) -> VideoHashes:
    return _hash(str(data_dir / SYNTHETIC / file), True, dihedral)


def _base_list(data_dir: Path) -> list[FrameHash]:
    return read_vpdq(data_dir / COMPUTED / "synthetic-videos__multishot_4photos.mp4.txt")


@pytest.mark.parametrize(
    "file",
    [
        "multishot_4photos.mp4",
        "multishot_4photos_15fps.mp4",
        "multishot_4photos_320x180_crf30.mp4",
        "multishot_4photos_gray.mp4",
        "multishot_4photos_letterbox.mp4",
        "multishot_4photos_vp9.webm",
    ],
)
def test_transformed_copies_match_original_list(data_dir: Path, file: str) -> None:
    result = compare_videos(_base_list(data_dir), _synthetic(data_dir, file).frames)
    assert result.is_match, result.listed_coverage


@pytest.mark.parametrize(
    "file",
    [
        "kenburns_zoom_kodim21.mp4",
        "kenburns_zoom_kodim23.mp4",
        "pan_lr_kodim13.mp4",
        "pyav_kenburns_kodim19.mp4",
        "multishot_4photos_hflip.mp4",  # matches only through its mirrored hashes
    ],
)
def test_other_videos_do_not_match_original_list(data_dir: Path, file: str) -> None:
    result = compare_videos(_base_list(data_dir), _synthetic(data_dir, file).frames)
    assert result.listed_coverage == 0.0


def test_mirrored_copy_matches_through_dihedral_variant(data_dir: Path) -> None:
    video = _synthetic(data_dir, "multishot_4photos_hflip.mp4", dihedral=True)
    assert len(video.variants) == len(video.frames)
    mirrored = [
        FrameHash(f.timestamp, v[MIRROR], f.quality)
        for f, v in zip(video.frames, video.variants, strict=True)
    ]
    assert compare_videos(_base_list(data_dir), mirrored).is_match


def test_mirror_variant_equals_hash_of_flipped_frame(data_dir: Path) -> None:
    """Independent check of the variant: pdqhash on the decoded frame flipped with numpy."""
    path = data_dir / SYNTHETIC / "multishot_4photos_hflip.mp4"
    video = _hash(str(path), True, True)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        rgb = frame.to_ndarray(format="rgb24")
    bits, _ = pdqhash.compute(np.ascontiguousarray(np.fliplr(rgb)))
    flipped = np.packbits(bits.astype(np.uint8)).tobytes().hex()
    assert video.frames[0].timestamp == 0.0
    assert _distance(video.variants[0][MIRROR], flipped) <= 10


def test_listed_clip_found_inside_longer_upload(data_dir: Path) -> None:
    clip = read_vpdq(data_dir / COMPUTED / "synthetic-videos__multishot_4photos_clip_3s-9s.mp4.txt")
    whole = _synthetic(data_dir, "multishot_4photos.mp4")
    assert compare_videos(clip, whole.frames).is_match
    # the other way round the clip covers half of the listed video: no match
    half = compare_videos(
        _base_list(data_dir), _synthetic(data_dir, "multishot_4photos_clip_3s-9s.mp4").frames
    )
    assert 0.3 < half.listed_coverage < 0.7
    assert not half.is_match


def test_animated_gif(data_dir: Path) -> None:
    path = data_dir / "imageio-binaries/images/newtonscradle.gif"
    video = hash_video(path.read_bytes(), "image/gif", DEFAULT_LIMITS, interval=0.25)
    assert video.frames_decoded == 36
    assert video.duration is not None and 0.5 < video.duration < 5
    assert len(video.frames) >= 2
    with Image.open(path) as image:
        bits, _ = pdqhash.compute(np.asarray(image.convert("RGB")))
    first = np.packbits(bits.astype(np.uint8)).tobytes().hex()
    assert video.frames[0].timestamp == 0.0
    assert _distance(video.frames[0].pdq, first) <= 10


def _encode(path: Path, fmt: str, codec: str, photo: Path, seconds: int = 3) -> bytes:
    """A small real video (a slow pan over a photo) written with PyAV."""
    image = Image.open(photo).convert("RGB")
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 10)
        for i in range(seconds * 10):
            crop = image.crop((i * 4, 0, i * 4 + 480, 360)).resize((320, 240))
            frame = av.VideoFrame.from_image(crop)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("fmt", "codec", "media_type"),
    [("avi", "mpeg4", "video/x-msvideo"), ("matroska", "libx264", "video/x-matroska")],
)
def test_other_containers(
    data_dir: Path, tmp_path: Path, fmt: str, codec: str, media_type: str
) -> None:
    data = _encode(tmp_path / f"clip.{fmt}", fmt, codec, data_dir / "kodak/kodim05.png")
    video = hash_video(data, media_type, DEFAULT_LIMITS)
    assert video.frames[0].timestamp == 0.0
    assert video.duration == pytest.approx(3.0, abs=0.2)
    with av.open(io.BytesIO(data)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    bits, _ = pdqhash.compute(np.ascontiguousarray(first))
    assert _distance(video.frames[0].pdq, np.packbits(bits.astype(np.uint8)).tobytes().hex()) <= 10


# ----------------------------------------------------------------------------- hostile input


def _chair(data_dir: Path) -> bytes:
    return (data_dir / VIDEOS / "chair-19-sd-bar.mp4").read_bytes()


@pytest.mark.parametrize("fraction", [0.0005, 0.01, 0.2, 0.5, 0.9, 0.999])
def test_truncated_mp4_fails_typed_or_hashes_what_is_there(data_dir: Path, fraction: float) -> None:
    data = _chair(data_dir)
    cut = data[: int(len(data) * fraction)]
    started = time.monotonic()
    try:
        video = hash_video(cut, "video/mp4", DEFAULT_LIMITS)
    except MediaError:
        pass
    else:  # moov comes first in this file: the frames before the cut are still decodable
        assert all(f.timestamp <= 18.8 * fraction + 2.0 for f in video.frames)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("media_type", ["video/mp4", "video/webm", "video/x-msvideo"])
def test_random_bytes_after_header(data_dir: Path, media_type: str) -> None:
    header = {
        "video/mp4": _chair(data_dir)[:32],
        "video/webm": b"\x1a\x45\xdf\xa3" + b"\x00" * 8,
        "video/x-msvideo": b"RIFF\x00\x10\x00\x00AVI LIST",
    }[media_type]
    rng = np.random.default_rng(7)
    # an AVI header with garbage after it parses as a file without streams
    with pytest.raises((CorruptMediaError, UnsupportedMediaError)):
        hash_video(header + rng.bytes(200_000), media_type, DEFAULT_LIMITS)


def test_empty_input() -> None:
    with pytest.raises(CorruptMediaError):
        hash_video(b"", "video/mp4", DEFAULT_LIMITS)


def test_unknown_video_type() -> None:
    with pytest.raises(UnsupportedMediaError):
        hash_video(b"\x00" * 100, "video/x-flv", DEFAULT_LIMITS)


def test_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 2048), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 44100
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(UnsupportedMediaError, match="no video stream"):
        hash_video(path.read_bytes(), "video/mp4", DEFAULT_LIMITS)


@pytest.mark.parametrize(
    ("limits", "limit"),
    [
        (Limits(max_pixels=480 * 720 - 1), "max_pixels"),
        (Limits(max_duration_seconds=10), "max_duration_seconds"),
        (Limits(max_frames=5), "max_frames"),
        (Limits(max_decode_seconds=0.001), "max_decode_seconds"),
    ],
)
def test_limits(data_dir: Path, limits: Limits, limit: str) -> None:
    with pytest.raises(MediaTooLargeError) as caught:
        hash_video(_chair(data_dir), "video/mp4", limits)
    assert caught.value.limit == limit


def test_corrupted_packets_are_concealed_or_typed(data_dir: Path) -> None:
    data = bytearray(_chair(data_dir))
    rng = np.random.default_rng(3)
    for position in rng.integers(4096, len(data), 500):
        data[int(position)] = int(rng.integers(0, 256))
    with contextlib.suppress(MediaError):
        hash_video(bytes(data), "video/mp4", DEFAULT_LIMITS)


def test_animation_frame_limit(data_dir: Path) -> None:
    path = data_dir / "imageio-binaries/images/newtonscradle.gif"
    with pytest.raises(MediaTooLargeError) as caught:
        hash_video(path.read_bytes(), "image/gif", Limits(max_frames=10))
    assert caught.value.limit == "max_frames"


def test_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        hash_video(b"", "video/mp4", DEFAULT_LIMITS, interval=0)
