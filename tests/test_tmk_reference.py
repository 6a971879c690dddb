"""TMK against the reference, on the real media of ``../shared/data``.

Golden values all come from ThreatExchange's reference: its sample ``.tmk`` files, the output
of its scorer over every pair of them (``expected-two-level-scores.csv``), and, for videos
without a sample hash, its hasher (``tmk-hash-video``) built from the shared sources and run
here when g++, make and ffmpeg are present. ffmpeg 5.1 itself is the golden value for which
frames the reference hashes.

- our hash of every sample video scores >= 0.99 at both levels against its sample hash (in
  fact >= 0.9996 fast, >= 0.9999 exact), with the reference's frame count;
- our scorer makes the reference's decision at 0.7/0.7 on all 105 sample pairs;
- a block list of the reference's sample ``.tmk`` files, added the public way (a JSON-lines
  list file of ThreatExchange ``HASH_TMK`` values made from the files' bytes, ``add_list`` and
  ``sync``), flags the sample videos and re-encoded, rescaled, grey, VP9, letterboxed and
  mirrored copies of listed videos, and no unrelated video (the unlisted sample, the synthetic
  videos, made videos and the bundled fixtures), each unrelated one's best score far below.

Without ``../shared/data`` (or ``$UPLOADSCAN_TEST_DATA``) the module is skipped, saying so;
``test_tmk_video.py`` still tests TMK end to end on media it makes itself.
"""

from __future__ import annotations

import base64
import csv
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import _tmk_reference as reference
import av
import numpy as np
import pytest
from _made_videos import Copy, encode, encode_copies, grey, letterbox, mirror, shots
from _media import ANIMATED_GIF, CLIP_A, CLIP_B, find_extended_data, fixture
from PIL import Image

from uploadscan import Scanner
from uploadscan.hashing._hash_file import hash_upload
from uploadscan.hashing._tmk import TmkHashType, TmkMode
from uploadscan.hashing._tmk_format import DIHEDRAL, TmkHash, parse_tmk, transform_hash
from uploadscan.hashing._tmk_rate import RateConverter
from uploadscan.hashing._tmk_score import level2_score, two_level_score
from uploadscan.media._video_plan import StreamClock


def _data() -> Path | None:
    try:
        return find_extended_data()[0]
    except RuntimeError:
        return None


DATA = _data()
pytestmark = [
    pytest.mark.extended,
    pytest.mark.skipif(
        DATA is None,
        reason="../shared/data (or $UPLOADSCAN_TEST_DATA) is absent: the reference TMK samples "
        "live there; test_tmk_video.py tests TMK on made videos and the bundled fixtures",
    ),
]
TE = (DATA or Path("/nonexistent")) / "threatexchange" / "tmk"
SAMPLE_VIDEOS = TE / "sample-videos"
SAMPLE_HASHES = TE / "sample-hashes"
SYNTHETIC = (DATA or Path("/nonexistent")) / "synthetic-videos"
WITH_SAMPLE_HASH = sorted(
    p.stem for p in SAMPLE_VIDEOS.glob("*.mp4") if (SAMPLE_HASHES / f"{p.stem}.tmk").exists()
)


def _sample(name: str) -> TmkHash:
    return parse_tmk((SAMPLE_HASHES / f"{name}.tmk").read_bytes())


def _ours(path: Path, mode: TmkMode = TmkMode.FAST) -> TmkHash:
    hashed = hash_upload(path, types=[TmkHashType(mode)], variants=False)
    assert hashed.error is None and hashed.result.tmk is not None
    return parse_tmk(hashed.result.tmk)


@pytest.fixture(scope="module")
def hasher() -> Path:
    """The reference ``tmk-hash-video`` (built on first use; skipped without tools)."""
    missing = reference.missing_tools()
    if missing is not None:
        pytest.skip(f"the reference hasher cannot be built or run: {missing}")
    assert DATA is not None
    return reference.build(DATA)


# ----------------------------------------------------------------------------- scores


def test_scores_make_the_reference_scorers_decisions() -> None:
    with (TE / "expected-two-level-scores.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 105  # every pair of the 15 sample hashes
    values = {p.name: parse_tmk(p.read_bytes()) for p in SAMPLE_HASHES.glob("*.tmk")}
    worst1 = worst2 = 0.0
    for row in rows:
        score = two_level_score(values[row["a"]], values[row["b"]])
        expected1, expected2 = float(row["level1"]), float(row["level2"])
        worst1 = max(worst1, abs(score.level1 - expected1))
        worst2 = max(worst2, abs(score.level2 - expected2))
        assert score.is_match(0.7, 0.7) == (expected1 >= 0.7 and expected2 >= 0.7), row
    assert worst1 < 5e-6 and worst2 < 5e-6  # the CSV has six decimals


def test_sample_values_round_trip_byte_for_byte() -> None:
    for path in SAMPLE_HASHES.glob("*.tmk"):
        data = path.read_bytes()
        value = parse_tmk(data)
        assert value.to_bytes() == data and value.is_reference_compatible()
        assert TmkHashType().to_bytes(value.to_text()) == data


# ----------------------------------------------------------------------------- hashing


@pytest.mark.parametrize("mode", list(TmkMode))
@pytest.mark.parametrize("name", WITH_SAMPLE_HASH)
def test_sample_videos_hash_like_the_reference(name: str, mode: TmkMode) -> None:
    expected = _sample(name)
    ours = _ours(SAMPLE_VIDEOS / f"{name}.mp4", mode)
    assert ours.frame_count == expected.frame_count
    score = two_level_score(expected, ours)
    print(f"\n| {name} | {mode.value} | {score.level1:.6f} | {score.level2:.6f} |")
    floor = 0.9999 if mode is TmkMode.EXACT else 0.999
    assert score.level1 >= floor and score.level2 >= floor, score


OTHER_VIDEOS = sorted(p for p in SYNTHETIC.glob("*") if p.suffix in (".mp4", ".webm"))
OTHER_VIDEOS += [SAMPLE_VIDEOS / "test-padded-dimensions.mp4"]


@pytest.mark.parametrize("video", OTHER_VIDEOS, ids=lambda p: p.name)
def test_other_videos_hash_like_the_reference_hasher(video: Path, hasher: Path) -> None:
    """VP9/WebM, 15 fps input, odd sizes, single-stream files (ffmpeg's vscfr)."""
    expected = parse_tmk(reference.hash_video(hasher, video))
    ours = _ours(video)
    assert ours.frame_count == expected.frame_count
    score = two_level_score(expected, ours)
    assert score.level1 >= 0.999 and score.level2 >= 0.999, score


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_display_rotation_is_applied_like_ffmpeg(
    degrees: int, hasher: Path, tmp_path: Path
) -> None:
    """ffmpeg autorotates by the display matrix (counter-clockwise angles) before scaling."""
    if not reference.ffmpeg_version().startswith("ffmpeg version 5."):
        pytest.skip("the rotate tag is written this way by ffmpeg 5 (the reference's)")
    rotated = tmp_path / f"rotate{degrees}.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(SAMPLE_VIDEOS / "doorknob-hd-no-bar.mp4"), "-c",
         "copy", "-metadata:s:v:0", f"rotate={degrees}", str(rotated)],
        check=True,
    )  # fmt: skip
    expected = parse_tmk(reference.hash_video(hasher, rotated))
    score = two_level_score(expected, _ours(rotated))
    assert score.level1 >= 0.99 and score.level2 >= 0.99
    # ... and the same rotation follows from the unrotated sample hash by algebra alone.
    name = {90: "rotate270", 180: "rotate180", 270: "rotate90"}[degrees]
    flips = DIHEDRAL[name]
    derived = transform_hash(_sample("doorknob-hd-no-bar"), flip_x=flips[0], flip_y=flips[1],
                             transpose=flips[2])  # fmt: skip
    assert level2_score(expected, derived).score >= 0.99


# ----------------------------------------------------------------------------- frame choice

LEVELS = "geq=lum='16+mod(N*37\\,220)':cb=128:cr=128"
LOSSLESS = ["-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", "-pix_fmt", "yuv444p",
            "-threads", "1"]  # fmt: skip
VFR = ["-fps_mode", "passthrough", "-video_track_timescale", "90000"]


def _numbered(rate: str, seconds: float, extra: str = "") -> list[str]:
    return ["-f", "lavfi", "-i", f"nullsrc=s=64x64:r={rate}:d={seconds},{LEVELS}{extra}"]


CLIPS: dict[str, list[str]] = {
    **{
        f"cfr_{rate.replace('/', '_')}.mp4": [*_numbered(rate, 3.5), *LOSSLESS]
        for rate in ("10", "12", "15", "24000/1001", "25", "30000/1001", "30", "50", "60")
    },
    "vfr_jitter.mp4": [*_numbered("30", 6, ",setpts='N/(30*TB)+0.012*sin(N*1.7)/TB'"),
                       *LOSSLESS, *VFR],
    "vfr_gap.mp4": [*_numbered("30", 6, ",setpts='(N+20*gte(N\\,60))/(30*TB)'"), *LOSSLESS, *VFR],
    "with_audio_30.mp4": [*_numbered("30", 4), "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono",
                          "-t", "4", *LOSSLESS, "-c:a", "aac", "-shortest"],
    "video_late_25.mkv": ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-itsoffset", "0.3",
                          *_numbered("25", 4), "-t", "4.3", "-map", "1:v", "-map", "0:a",
                          *LOSSLESS, "-c:a", "aac"],
    "video_late_2997.ts": ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-itsoffset", "0.37",
                           *_numbered("30000/1001", 4), "-t", "4.3", "-map", "1:v", "-map",
                           "0:a", *LOSSLESS, "-c:a", "mp2"],
}  # fmt: skip


def _ffmpeg_choice(path: Path) -> list[int]:
    """Source frame of every frame the reference's ffmpeg command writes (each source frame
    is a flat grey of its own level)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-s", "64:64", "-an", "-f",
         "rawvideo", "-c:v", "rawvideo", "-pix_fmt", "rgb24", "-r", "15", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    written = np.frombuffer(raw, np.uint8).reshape(-1, 64, 64, 3)[:, 32, 32, 1].astype(int)
    with av.open(str(path)) as container:
        levels = [
            int(f.reformat(width=64, height=64, format="rgb24").to_ndarray()[32, 32, 1])
            for f in container.decode(video=0)
        ]
    source = np.array(levels)
    assert len(set(levels)) == len(levels)
    return [int(np.argmin(np.abs(source - level))) for level in written]


def _our_choice(path: Path) -> list[int]:
    """Source frame of every 15 fps frame we hash: our clock and our replay of ffmpeg."""
    out: list[int] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        clock = StreamClock.of(container, stream)
        rate = RateConverter(
            15,
            clock.stream.frame_rate,
            single_stream=clock.stream.single_stream,
            start_known=clock.stream.start_known,
        )
        previous: int | None = None
        for index, frame in enumerate(container.decode(stream)):
            timing = clock.of_frame(frame)
            assert timing is not None
            copies_previous, copies_this, kept = rate.push(timing.time, timing.duration)
            if copies_previous and previous is not None:
                out += [previous] * copies_previous
            out += [index] * copies_this
            if kept:
                previous = index
        if previous is not None:
            out += [previous] * rate.flush()
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    if not reference.ffmpeg_version().startswith("ffmpeg version 5.1"):
        pytest.skip("the expected frame choice is ffmpeg 5.1's, the reference's ffmpeg")
    folder = tmp_path_factory.mktemp("tmk-clips")

    def make(name: str) -> Path:
        out = folder / name
        subprocess.run(["ffmpeg", "-v", "error", "-y", *CLIPS[name], str(out)], check=True)
        return out

    yield make


@pytest.mark.parametrize("clip", list(CLIPS))
def test_frame_choice_is_ffmpeg_51s(clip: str, clips: Callable[[str], Path]) -> None:
    path = clips(clip)
    assert _our_choice(path) == _ffmpeg_choice(path)


# ----------------------------------------------------------------------------- detection


def _family(name: str) -> str:
    return name.replace("_", "-").split("-")[0]


def _frames_of(source: Path) -> Iterator[np.ndarray]:
    with av.open(str(source)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _halved(source: Path) -> Iterator[np.ndarray]:
    for frame in _frames_of(source):
        yield np.asarray(Image.fromarray(frame).reduce(2))


def _copies(folder: Path) -> dict[str, tuple[Path, str]]:
    """upload name -> (file, family of the listed original it copies): copies of real
    videos made with PyAV, a re-encode at full size and the others at half size."""
    made: dict[str, tuple[Path, str]] = {}
    vp9 = {"crf": "34", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    for name in ("doorknob-hd-no-bar", "pattern-hd-no-bar"):
        source = SAMPLE_VIDEOS / f"{name}.mp4"
        reencoded = folder / f"{name}-reencoded.mp4"
        encode(reencoded, _frames_of(source), options={"crf": "34", "preset": "veryfast"})
        copies = {
            "rescaled": Copy(folder / f"{name}-rescaled.mp4"),
            "grey": Copy(folder / f"{name}-grey.mp4", transform=grey),
            "vp9": Copy(folder / f"{name}-vp9.webm", "libvpx-vp9", vp9),
            "letterboxed": Copy(folder / f"{name}-letterboxed.mp4", transform=letterbox),
            "mirrored": Copy(folder / f"{name}-mirrored.mp4", transform=mirror),
        }
        encode_copies(_halved(source), list(copies.values()))
        made[f"{name} reencoded"] = (reencoded, _family(name))
        for kind, copy in copies.items():
            made[f"{name} {kind}"] = (copy.path, _family(name))
    return made


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str | None]]:
    """Every upload the detection test scans, with the family it must match (None: none)."""
    folder = tmp_path_factory.mktemp("tmk-copies")
    out: dict[str, tuple[Path, str | None]] = {}
    # One listed original per family (test_sample_videos_hash_like_the_reference scores
    # every one), and the sample video that has no sample hash.
    for name in ("chair-orig-22-sd-bar", "doorknob-hd-no-bar", "pattern-longer-no-bar"):
        out[name] = (SAMPLE_VIDEOS / f"{name}.mp4", _family(name))
    for path in sorted(SAMPLE_VIDEOS.glob("*.mp4")):
        if not (SAMPLE_HASHES / f"{path.stem}.tmk").exists():
            out[path.stem] = (path, None)
    out.update(_copies(folder))
    for path in sorted(SYNTHETIC.glob("*.mp4")):
        out[path.name] = (path, None)  # none of these is on the sample list
    # A letterboxed copy of an unrelated video: bars alone must not make it match.
    path = encode(
        folder / "pan-letterboxed.mp4",
        _frames_of(SYNTHETIC / "pan_lr_kodim13.mp4"),
        transform=letterbox,
    )
    out["pan_lr_kodim13 letterboxed"] = (path, None)
    for name in (CLIP_A, CLIP_B, ANIMATED_GIF):
        out[f"fixtures/{name}"] = (fixture(name), None)
    out["made video 21"] = (encode(folder / "made21.mp4", shots(21)), None)
    out["made video 22 mirrored"] = (
        encode(folder / "made22.mp4", shots(22), transform=mirror),
        None,
    )
    return out


def _hash_tmk_indicator(data: bytes) -> str:
    """ThreatExchange's ``HASH_TMK`` text of a ``.tmk`` file, made from its bytes alone: the
    first 12 bytes as ASCII, ``|``, the base64 of the rest."""
    return data[:12].decode("ascii") + "|" + base64.b64encode(data[12:]).decode("ascii")


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scanner]:
    """A block list of the reference's own sample hashes, synced from a list file."""
    folder = tmp_path_factory.mktemp("tmk-reference-list")
    listing = folder / "reference-tmk.jsonl"
    with listing.open("w") as out:
        for path in sorted(SAMPLE_HASHES.glob("*.tmk")):
            value = _hash_tmk_indicator(path.read_bytes())
            out.write(json.dumps({"hash_type": "tmk", "value": value, "id": path.stem}) + "\n")
    with Scanner.open(folder / "home") as opened:
        opened.add_list("reference", kind="block", source=str(listing))
        [result] = opened.sync()
        assert result.ok and result.added == len(list(SAMPLE_HASHES.glob("*.tmk"))), result
        yield opened


def _best_score(upload: Path) -> tuple[float, float]:
    """The highest level 1 and level 2 of any query form the scanner sends for ``upload`` (as
    computed, mirrored, inside its bars) against any listed sample hash."""
    hashed = hash_upload(upload, types=[TmkHashType()], variants=True)
    forms = [parse_tmk(TmkHashType().to_bytes(q.value)) for q in hashed.queries
             if q.hash_type == "tmk"]  # fmt: skip
    assert forms, upload
    scores = [two_level_score(_sample(p.stem), form)
              for p in SAMPLE_HASHES.glob("*.tmk") for form in forms]  # fmt: skip
    return max(s.level1 for s in scores), max(s.level2 for s in scores)


def test_detection(scanner: Scanner, uploads: dict[str, tuple[Path, str | None]]) -> None:
    """Every copy of a listed video is flagged by its original, nothing unrelated is."""
    rows = []
    for name, (path, family) in uploads.items():
        verdict = scanner.scan(path)
        tmk_matches = [m for m in verdict.matches if m.hash_type == "tmk"]
        matched = sorted({m.external_id or "" for m in tmk_matches})
        assert {_family(m) for m in matched} == ({family} if family else set()), (name, matched)
        if family is not None:
            assert verdict.action.value == "block", (name, verdict.reasons)
            evidence = [m.evidence or {} for m in tmk_matches]
            level1 = max(float(e["level1"]) for e in evidence)
            level2 = max(float(e["level2"]) for e in evidence)
        else:
            assert verdict.action.value == "allow" and not verdict.matches, (name, verdict)
            level1, level2 = _best_score(path)
            assert level1 < 0.7 or level2 < 0.7, name
        rows.append((name, family, verdict.action.value, matched, level1, level2))
    print("\n| upload | copy of | verdict | matched entries | level 1 | level 2 |")
    print("|---|---|---|---|---|---|")
    for name, family, action, matched, level1, level2 in rows:
        print(f"| {name} | {family or '-'} | {action} | {len(matched)} | {level1:.3f} "
              f"| {level2:.3f} |")  # fmt: skip
