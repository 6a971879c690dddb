"""Video hashing against vPDQ's reference output; plus limits and hostile input.

On the bundled fixture videos (golden values: their vPDQ files, made by Meta's ``vpdq``) and
copies of them the tests encode with PyAV (rescaled, recompressed, fewer frames, grey, padded,
mirrored, cut, VP9), whose golden values are ``pdqhash`` on every decoded frame. The extended
corpus adds ThreatExchange's sample videos with their published vPDQ hashes, and more copies.
"""

from __future__ import annotations

import bisect
import contextlib
import fractions
import io
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import av
import numpy as np
import pdqhash
import pytest
from _media import ANIMATED_GIF, CLIP_A, CLIP_B, fixture, vpdq_file
from _reference import reference_frames
from PIL import Image, ImageOps

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


def _assert_frames_agree(video: VideoHashes, reference: list[FrameHash]) -> None:
    """Each hashed frame is within 31 bits of the reference hash of the frame at its time."""
    times = [f.timestamp for f in reference]
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


@pytest.mark.extended
@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_frames_agree_with_vpdq_reference(data_dir: Path, name: str) -> None:
    reference = read_vpdq(data_dir / HASHES / f"{name}.txt")
    _assert_frames_agree(_sample(data_dir, name, trim=False), reference)


@pytest.mark.extended
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


@pytest.mark.extended
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


@pytest.mark.extended
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


@pytest.mark.extended
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


@pytest.mark.extended
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


@pytest.mark.extended
def test_mirrored_copy_matches_through_dihedral_variant(data_dir: Path) -> None:
    video = _synthetic(data_dir, "multishot_4photos_hflip.mp4", dihedral=True)
    assert len(video.variants) == len(video.frames)
    mirrored = [
        FrameHash(f.timestamp, v[MIRROR], f.quality)
        for f, v in zip(video.frames, video.variants, strict=True)
    ]
    assert compare_videos(_base_list(data_dir), mirrored).is_match


@pytest.mark.extended
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


@pytest.mark.extended
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


@pytest.mark.extended
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


# ----------------------------------------------------------------------------- bundled fixtures

FrameEdit = Callable[[Image.Image], Image.Image]


@dataclass(frozen=True)
class Copy:
    """How a test copy is made from a fixture video: each kept frame edited, then encoded."""

    edit: FrameEdit | None = None
    every: int = 1  # keep one frame in ``every``
    seconds: tuple[float, float] | None = None  # keep only this part of the video
    codec: str = "libx264"
    crf: int = 23


def _letterbox(image: Image.Image, bars: int) -> Image.Image:
    return ImageOps.expand(image, border=(0, bars, 0, bars), fill=(0, 0, 0))


COPIES = {
    "half-rate": Copy(every=2),
    "small-crf35": Copy(edit=lambda im: im.resize((160, 120)), crf=35),
    "grey": Copy(edit=lambda im: ImageOps.grayscale(im).convert("RGB")),
    "letterbox": Copy(edit=lambda im: _letterbox(im, 40)),
    "vp9": Copy(codec="libvpx-vp9", crf=36),
    "mirror": Copy(edit=ImageOps.mirror),
    "tall-bars": Copy(edit=lambda im: _letterbox(ImageOps.grayscale(im).convert("RGB"), 160)),
    "clip-2s-6s": Copy(seconds=(2.0, 6.0)),
}


class Copies:
    """Encoded once per module, in a temporary directory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._made: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        if name not in self._made:
            self._made[name] = _encode_copy(fixture(CLIP_A), self.folder, name, COPIES[name])
        return self._made[name]


def _encode_copy(source: Path, folder: Path, name: str, how: Copy) -> Path:
    webm = how.codec == "libvpx-vp9"
    target = folder / f"{name}.{'webm' if webm else 'mp4'}"
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        rate = inp.streams.video[0].average_rate
        assert rate is not None
        stream = out.add_stream(how.codec, rate=rate / how.every, options={"crf": str(how.crf)})
        if webm:
            stream.options = {"crf": str(how.crf), "b": "0"}
        stream.pix_fmt = "yuv420p"
        kept = 0
        for index, frame in enumerate(inp.decode(video=0)):
            if index % how.every:
                continue
            if how.seconds and not how.seconds[0] <= float(frame.time or 0) < how.seconds[1]:
                continue
            picture = frame.to_image()
            if how.edit is not None:
                picture = how.edit(picture)
            if kept == 0:
                stream.width, stream.height = picture.size
            new = av.VideoFrame.from_image(picture)
            new.pts = kept
            new.time_base = fractions.Fraction(how.every, 1) / rate
            out.mux(stream.encode(new))
            kept += 1
        out.mux(stream.encode(None))
    return target


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Copies:
    return Copies(tmp_path_factory.mktemp("video-copies"))


def _fixture_list(video: str) -> list[FrameHash]:
    """The golden list: vPDQ's own hashes of every frame of the fixture video."""
    return read_vpdq(vpdq_file(video))


@pytest.mark.parametrize("video", [CLIP_A, CLIP_B])
def test_fixture_frames_agree_with_vpdq(video: str) -> None:
    _assert_frames_agree(_hash(str(fixture(video)), trim=False), _fixture_list(video))


def test_fixture_keyframes_plus_sampling_cover_time_cheaply() -> None:
    reference = _fixture_list(CLIP_A)
    video = _hash(str(fixture(CLIP_A)), trim=False)
    times = sorted({f.timestamp for f in video.frames})
    assert times[0] == 0.0
    assert max(b - a for a, b in itertools.pairwise(times)) <= 2.0 + 1e-6
    assert video.frames_decoded < len(reference) / 2
    assert video.duration == pytest.approx(reference[-1].timestamp, abs=0.11)
    assert all(f.quality >= 50 for f in video.frames)


@pytest.mark.parametrize("copy", ["half-rate", "small-crf35", "grey", "letterbox", "vp9"])
def test_fixture_copies_match_the_original_list(copies: Copies, copy: str) -> None:
    path = copies[copy]
    if copy != "letterbox":  # the copy is what the test says: by the reference, a match too
        assert compare_videos(_fixture_list(CLIP_A), reference_frames(path)).is_match
    result = compare_videos(_fixture_list(CLIP_A), _hash(str(path)).frames)
    assert result.is_match, result.listed_coverage
    # ... and not the unrelated video's list
    assert compare_videos(_fixture_list(CLIP_B), _hash(str(path)).frames).listed_coverage == 0.0


def test_fixture_videos_do_not_match_each_other(copies: Copies) -> None:
    assert (
        compare_videos(_fixture_list(CLIP_A), _hash(str(fixture(CLIP_B))).frames).listed_coverage
        == 0.0
    )
    assert (
        compare_videos(_fixture_list(CLIP_B), _hash(str(fixture(CLIP_A))).frames).listed_coverage
        == 0.0
    )
    gif = hash_video(fixture(ANIMATED_GIF).read_bytes(), "image/gif", DEFAULT_LIMITS)
    assert compare_videos(_fixture_list(CLIP_A), gif.frames).listed_coverage == 0.0
    # a mirrored copy is another picture to plain PDQ ...
    mirrored = _hash(str(copies["mirror"]))
    assert compare_videos(_fixture_list(CLIP_A), mirrored.frames).listed_coverage == 0.0


def test_fixture_mirrored_copy_matches_through_dihedral_variant(copies: Copies) -> None:
    video = _hash(str(copies["mirror"]), True, True)
    assert len(video.variants) == len(video.frames)
    mirrored = [
        FrameHash(f.timestamp, v[MIRROR], f.quality)
        for f, v in zip(video.frames, video.variants, strict=True)
    ]
    assert compare_videos(_fixture_list(CLIP_A), mirrored).is_match


def test_fixture_mirror_variant_equals_hash_of_flipped_frame(copies: Copies) -> None:
    path = copies["mirror"]
    video = _hash(str(path), True, True)
    with av.open(str(path)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    bits, _ = pdqhash.compute(np.ascontiguousarray(np.fliplr(rgb)))
    flipped = np.packbits(bits.astype(np.uint8)).tobytes().hex()
    assert video.frames[0].timestamp == 0.0
    assert _distance(video.variants[0][MIRROR], flipped) <= 10


def test_fixture_clip_found_inside_the_whole_video(copies: Copies) -> None:
    clip = reference_frames(copies["clip-2s-6s"])  # its own list, by the reference
    assert 3.8 < clip[-1].timestamp < 4.0
    whole = _hash(str(fixture(CLIP_A)))
    assert compare_videos(clip, whole.frames).is_match
    # the other way round the clip covers half of the listed video: no match
    half = compare_videos(_fixture_list(CLIP_A), _hash(str(copies["clip-2s-6s"])).frames)
    assert 0.3 < half.listed_coverage < 0.7
    assert not half.is_match


def test_fixture_bars_are_trimmed_to_match_a_list_without_them(copies: Copies) -> None:
    path = str(copies["tall-bars"])
    listed = _fixture_list(CLIP_A)
    assert compare_videos(listed, _hash(path, trim=False).frames).is_match is False
    assert compare_videos(listed, _hash(path).frames).is_match


def test_fixture_animated_gif() -> None:
    path = fixture(ANIMATED_GIF)
    video = hash_video(path.read_bytes(), "image/gif", DEFAULT_LIMITS, interval=0.25)
    with Image.open(path) as image:
        assert video.frames_decoded == image.n_frames == 12
        bits, _ = pdqhash.compute(np.asarray(image.convert("RGB")))
    assert video.duration == pytest.approx(12 * 0.08, abs=0.09)
    assert len(video.frames) >= 2
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
def test_other_containers(tmp_path: Path, fmt: str, codec: str, media_type: str) -> None:
    data = _encode(tmp_path / f"clip.{fmt}", fmt, codec, fixture("scene_large.jpg"))
    video = hash_video(data, media_type, DEFAULT_LIMITS)
    assert video.frames[0].timestamp == 0.0
    assert video.duration == pytest.approx(3.0, abs=0.2)
    with av.open(io.BytesIO(data)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    bits, _ = pdqhash.compute(np.ascontiguousarray(first))
    assert _distance(video.frames[0].pdq, np.packbits(bits.astype(np.uint8)).tobytes().hex()) <= 10


# ----------------------------------------------------------------------------- hostile input


def _clip() -> bytes:
    """H.264 MP4 with moov first, 320x240, 8 s at 10 fps."""
    return fixture(CLIP_A).read_bytes()


@pytest.mark.parametrize("fraction", [0.0005, 0.01, 0.2, 0.5, 0.9, 0.999])
def test_truncated_mp4_fails_typed_or_hashes_what_is_there(fraction: float) -> None:
    data = _clip()
    cut = data[: int(len(data) * fraction)]
    started = time.monotonic()
    try:
        video = hash_video(cut, "video/mp4", DEFAULT_LIMITS)
    except MediaError:
        pass
    else:  # moov comes first in this file: the frames before the cut are still decodable
        assert all(f.timestamp <= 8.0 * fraction + 2.0 for f in video.frames)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("media_type", ["video/mp4", "video/webm", "video/x-msvideo"])
def test_random_bytes_after_header(media_type: str) -> None:
    header = {
        "video/mp4": _clip()[:32],
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
        (Limits(max_pixels=320 * 240 - 1), "max_pixels"),
        (Limits(max_duration_seconds=7.5), "max_duration_seconds"),
        (Limits(max_frames=5), "max_frames"),
        (Limits(max_decode_seconds=0.001), "max_decode_seconds"),
    ],
)
def test_limits(limits: Limits, limit: str) -> None:
    with pytest.raises(MediaTooLargeError) as caught:
        hash_video(_clip(), "video/mp4", limits)
    assert caught.value.limit == limit


def test_limits_at_the_boundary_pass() -> None:
    fits = Limits(max_pixels=320 * 240, max_duration_seconds=8.5, max_frames=80)
    assert hash_video(_clip(), "video/mp4", fits).frames_decoded > 0


def test_corrupted_packets_are_concealed_or_typed() -> None:
    data = bytearray(_clip())
    rng = np.random.default_rng(3)
    for position in rng.integers(4096, len(data), 500):
        data[int(position)] = int(rng.integers(0, 256))
    with contextlib.suppress(MediaError):
        hash_video(bytes(data), "video/mp4", DEFAULT_LIMITS)


def test_animation_frame_limit() -> None:
    path = fixture(ANIMATED_GIF)  # 12 frames
    with pytest.raises(MediaTooLargeError) as caught:
        hash_video(path.read_bytes(), "image/gif", Limits(max_frames=10))
    assert caught.value.limit == "max_frames"


def test_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        hash_video(b"", "video/mp4", DEFAULT_LIMITS, interval=0)
