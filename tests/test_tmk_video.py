"""TMK end to end on videos the tests make themselves (no ``../shared/data`` needed).

One decode pass feeds PDQ frames and TMK; ``hash_file`` returns a ``.tmk`` file; the CLI
writes them; a list of TMK values flags re-encoded, rescaled, grey, VP9, letterboxed and
mirrored copies of a listed video and nothing unrelated (on made videos, and on the bundled
fixture ``clip_a.mp4`` put on an own list the public way); per-list thresholds decide;
verdicts abbreviate the values; the level-1 index agrees with brute force at the threshold.
The golden values against the reference are in ``test_tmk_reference.py`` (extended corpus).
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from _made_videos import Copy, encode, encode_copies, grey, letterbox, mirror, rescale, shots
from _media import ANIMATED_GIF, CLIP_A, CLIP_B, fixture
from PIL import Image

import uploadscan
from uploadscan import Action, InvalidHashError, ListSettings, Scanner
from uploadscan.cli import main as cli_main
from uploadscan.hashing._hash_file import hash_upload
from uploadscan.hashing._registry import get
from uploadscan.hashing._tmk import TmkHashType, TmkMode
from uploadscan.hashing._tmk_format import TmkHash, parse_tmk
from uploadscan.hashing._tmk_score import two_level_score
from uploadscan.index._vectors import VectorIndex
from uploadscan.store._lists import EntryUpsert

TMK = get("tmk")
PDQ = get("pdq")
FAST_VP9 = {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}
COPIES = ("reencoded", "rescaled", "grey", "vp9", "letterboxed", "mirrored")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tmk-videos")
    frames = list(shots(1, seconds=6))
    return {
        "original": encode(out / "original.mp4", iter(frames)),
        "reencoded": encode(
            out / "reencoded.mp4", iter(frames), options={"crf": "36", "preset": "faster"}
        ),
        "rescaled": encode(out / "rescaled.mp4", iter(frames), transform=rescale(176, 144)),
        "grey": encode(out / "grey.mp4", iter(frames), transform=grey),
        "vp9": encode(out / "vp9.webm", iter(frames), codec="libvpx-vp9", options=FAST_VP9),
        "letterboxed": encode(out / "letterboxed.mp4", iter(frames), transform=letterbox),
        "mirrored": encode(out / "mirrored.mp4", iter(frames), transform=mirror),
        "other": encode(out / "other.mp4", shots(2, seconds=6)),
        "other_letterboxed": encode(out / "other_boxed.mp4", shots(3), transform=letterbox),
        "other_long": encode(out / "other_long.mp4", shots(4, seconds=12)),
    }


def _value(path: Path) -> TmkHash:
    tmk = uploadscan.hash_file(path).tmk
    assert tmk is not None
    return parse_tmk(tmk)


def test_hash_file_gives_a_reference_layout_tmk_file(videos: dict[str, Path]) -> None:
    result = uploadscan.hash_file(videos["original"])
    assert result.tmk is not None and len(result.tmk) == 263_344
    value = parse_tmk(result.tmk)
    assert value.is_reference_compatible()
    # 180 frames at 30 fps: ffmpeg -r 15 keeps 0, 1, 2, 3, 5, 7, ... (it lags 1.5 frames)
    assert value.frame_count == 92
    assert result.values["tmk"] == value.to_text() == result.to_dict()["tmk"]
    assert result.frames  # the PDQ frames came from the same pass
    image = videos["original"].parent / "still.png"
    Image.fromarray(next(shots(5))).save(image)
    assert uploadscan.hash_file(image).tmk is None


def test_fast_mode_stays_within_a_hair_of_exact(videos: dict[str, Path]) -> None:
    exact = hash_upload(videos["original"], types=[TmkHashType(TmkMode.EXACT)], variants=False)
    fast = hash_upload(videos["original"], types=[TmkHashType(TmkMode.FAST)], variants=False)
    a, b = parse_tmk(exact.result.tmk or b""), parse_tmk(fast.result.tmk or b"")
    assert a.frame_count == b.frame_count
    score = two_level_score(a, b)
    assert score.level1 > 0.999 and score.level2 > 0.999


@pytest.mark.parametrize("variants", [False, True])
def test_pdq_frames_are_the_same_with_and_without_tmk(
    videos: dict[str, Path], variants: bool
) -> None:
    """The every-frame pass hands PDQ the planned decode's samples at the same times."""
    alone = hash_upload(videos["original"], types=[PDQ], variants=variants)
    both = hash_upload(videos["original"], types=[PDQ, TMK], variants=variants)
    assert "tmk" not in alone.result.values and "tmk" in both.result.values
    assert both.result.frames == alone.result.frames
    assert [q for q in both.queries if q.hash_type == "pdq"] == [
        q for q in alone.queries if q.hash_type == "pdq"
    ]
    # Decoding non-reference frames too can serve a sample time one frame earlier.
    exact = hash_upload(videos["original"], types=[PDQ, TmkHashType(TmkMode.EXACT)])
    assert len(exact.result.frames) == len(alone.result.frames)
    for ours, planned in zip(exact.result.frames, alone.result.frames, strict=True):
        assert planned.timestamp - 1 / 30 - 1e-6 <= ours.timestamp <= planned.timestamp


@pytest.fixture(scope="module")
def listed(videos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose block list holds the original's TMK value among others."""
    home = tmp_path_factory.mktemp("tmk-home")
    values = [_value(videos["original"]).to_text()]
    rng = np.random.default_rng(9)
    template = _value(videos["other_long"])
    for _ in range(30):  # unrelated entries, so the index holds more than the answer
        values.append(
            TmkHash(
                frames_per_second=15,
                periods=template.periods,
                fourier_coefficients=template.fourier_coefficients,
                frame_count=template.frame_count,
                pure_average=rng.normal(size=256).astype(np.float32),
                cos_features=template.cos_features,
                sin_features=template.sin_features,
            ).to_text()
        )
    with Scanner.open(home) as scanner:
        scanner.add_list("videos", kind="block", source=None)
        upserts = [EntryUpsert("tmk", v, external_id=f"v{i}") for i, v in enumerate(values)]
        scanner.store.apply_batch("videos", upserts)
    return home


@pytest.mark.parametrize("copy", COPIES)
def test_copies_of_a_listed_video_are_blocked(
    videos: dict[str, Path], listed: Path, copy: str
) -> None:
    with Scanner.open(listed) as scanner:
        verdict = scanner.scan(videos[copy])
    assert verdict.action is Action.BLOCK, verdict.reasons
    [match] = [m for m in verdict.matches if m.hash_type == "tmk"]
    assert match.external_id == "v0"
    evidence = match.evidence or {}
    assert float(evidence["level1"]) >= 0.7 and float(evidence["level2"]) >= 0.7
    assert match.distance == evidence["level2"]
    assert abs(float(evidence["offset_seconds"])) < 0.5
    # Huge values are abbreviated wherever a verdict shows them.
    assert match.value.startswith("TMK1FVECPDQF|sha256:") and len(match.value) == 36
    assert verdict.hashes["tmk"][0].startswith("TMK1FVECPDQF|sha256:")
    assert len(json.dumps(verdict.to_dict())) < 10_000


@pytest.mark.parametrize("other", ["other", "other_letterboxed", "other_long"])
def test_unrelated_videos_are_allowed(videos: dict[str, Path], listed: Path, other: str) -> None:
    with Scanner.open(listed) as scanner:
        verdict = scanner.scan(videos[other])
    assert verdict.action is Action.ALLOW, verdict.matches


def test_the_reference_alone_misses_letterbox_and_mirror(videos: dict[str, Path]) -> None:
    """Why the extra query forms exist: as computed, these copies score below 0.7."""
    original = _value(videos["original"])
    for copy in ("letterboxed", "mirrored"):
        score = two_level_score(original, _value(videos[copy]))
        assert min(score.level1, score.level2) < 0.7, copy


def test_per_list_thresholds_decide(videos: dict[str, Path], listed: Path) -> None:
    with Scanner.open(listed) as scanner:
        [match] = scanner.scan(videos["reencoded"]).matches
        evidence = match.evidence or {}
        level1, level2 = float(evidence["level1"]), float(evidence["level2"])
        assert level1 < 1.0 and level2 < 1.0
        for setting, reached in (("tmk_level1", level1), ("tmk_level2", level2)):
            strict = ListSettings.from_dict({setting: (reached + 1.0) / 2})
            scanner.store.update_settings("videos", strict)
            assert scanner.scan(videos["reencoded"]).action is Action.ALLOW
            scanner.store.update_settings("videos", ListSettings.from_dict({setting: reached}))
            assert scanner.scan(videos["reencoded"]).action is Action.BLOCK
        scanner.store.update_settings("videos", ListSettings())
        with pytest.raises(uploadscan.ConfigError):
            ListSettings.from_dict({"tmk_level2": 1.5})


def test_lookup_takes_tmk_values_and_refuses_hostile_ones(
    videos: dict[str, Path], listed: Path
) -> None:
    value = _value(videos["mirrored"])
    with Scanner.open(listed) as scanner:
        assert scanner.lookup({"tmk": value.to_text()}).action is Action.ALLOW  # as computed
        mirrored_back = uploadscan.hashing._tmk_format.mirror_hash(value).to_text()
        assert scanner.lookup({"tmk": mirrored_back}).action is Action.BLOCK
        for hostile in ("TMK1FVECPDQF|AAAA", "TMK1FVECPDQF|" + "A" * 3_000_000, "0" * 64):
            with pytest.raises(InvalidHashError):
                scanner.lookup({"tmk": hostile})


def test_tmk_is_computed_only_when_a_list_holds_it(videos: dict[str, Path], tmp_path: Path) -> None:
    pdq_value = uploadscan.hash_file(videos["other"]).frames[0].pdq
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list("photos", kind="block", source=None)
        scanner.store.apply_batch("photos", [EntryUpsert("pdq", pdq_value)])
        assert "tmk" not in scanner.scan(videos["original"]).hashes
        scanner.add_list("videos", kind="block", source=None)
        scanner.store.apply_batch("videos", [EntryUpsert("tmk", _value(videos["other"]).to_text())])
        assert "tmk" in scanner.scan(videos["original"]).hashes


def test_cli_hash_writes_tmk_files(
    videos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "still.png"
    Image.fromarray(next(shots(6))).save(image)
    target = tmp_path / "tmk"
    paths = [str(videos["original"]), str(videos["vp9"]), str(image)]
    assert cli_main(["hash", "--tmk", str(target), *paths]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["tmk_file"]).name for r in records[:2]] == ["original.tmk", "vp9.tmk"]
    assert "tmk_file" not in records[2]
    for path in (videos["original"], videos["vp9"]):
        written = (target / f"{path.stem}.tmk").read_bytes()
        assert written == uploadscan.hash_file(path).tmk
        assert parse_tmk(written).is_reference_compatible()


def test_an_animated_gif_has_a_tmk_value_like_its_video(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    frames = list(shots(1, seconds=6))[::3]  # 10 fps
    gif = tmp_path / "original.gif"
    # Quantised up front: Pillow's own quantiser takes minutes for 60 frames.
    pictures = [Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE) for f in frames]
    pictures[0].save(
        gif, save_all=True, append_images=pictures[1:], duration=100, loop=0, optimize=False
    )
    value = _value(gif)
    assert abs(value.frame_count - 90) <= 1  # 6 s at 15 fps, give or take the last repeat
    score = two_level_score(_value(videos["original"]), value)
    assert score.level1 >= 0.7 and score.level2 >= 0.7


def _with_average(template: TmkHash, average: np.ndarray) -> TmkHash:
    return TmkHash(
        frames_per_second=15,
        periods=template.periods,
        fourier_coefficients=template.fourier_coefficients,
        frame_count=template.frame_count,
        pure_average=average.astype(np.float32),
        cos_features=template.cos_features,
        sin_features=template.sin_features,
    )


def test_level1_search_equals_brute_force_at_the_threshold(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    """Values whose level 1 to the query straddles 0.7 by float32 hairs, in an index file
    and in the in-memory delta: the search keeps exactly those a float64 cosine keeps."""
    query = _value(videos["original"])
    rng = np.random.default_rng(11)
    q = query.pure_average.astype(np.float64)
    q /= np.linalg.norm(q)
    values = []
    for cosine in np.concatenate([0.7 + np.arange(-20, 21) * 1e-7, rng.uniform(-1, 1, 60)]):
        noise = rng.normal(size=256)
        orthogonal = noise - (noise @ q) * q
        orthogonal /= np.linalg.norm(orthogonal)
        average = (cosine * q + np.sqrt(1 - cosine**2) * orthogonal) * rng.uniform(1, 100)
        values.append(_with_average(query, average))
    data = [v.to_bytes() for v in values]
    ids = np.arange(len(data), dtype=np.int64)
    expected = {i for i, v in enumerate(values) if two_level_score(v, query).level1 >= 0.7}
    assert 15 < len(expected) < 60
    for index in (
        VectorIndex.build(TMK, ids, data, tmp_path / "tmk.idx"),
        VectorIndex.in_memory(TMK, ids, data),
    ):
        hits = TMK.search(index, query.to_text(), 0.7)
        assert {h.row for h in hits} == expected
        assert all(h.evidence["level1"] >= 0.7 and h.measure > 0.99 for h in hits)


# ----------------------------------------------------------------------------- bundled fixtures


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _best_tmk_score(listed: TmkHash, upload: Path) -> tuple[float, float]:
    """The highest (level 1, level 2) of any query form the scanner would send for
    ``upload`` (as computed, mirrored, inside its bars) against ``listed``."""
    hashed = hash_upload(upload, types=[TMK], variants=True)
    forms = [parse_tmk(TMK.to_bytes(q.value)) for q in hashed.queries if q.hash_type == "tmk"]
    assert forms, upload
    scores = [two_level_score(listed, form) for form in forms]
    return max(s.level1 for s in scores), max(s.level2 for s in scores)


@pytest.fixture(scope="module")
def fixture_uploads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bool]]:
    """Uploads for the own-list test: copies of ``clip_a.mp4`` made with PyAV (True: must
    match) and unrelated media: the other bundled fixtures and made videos (False)."""
    folder = tmp_path_factory.mktemp("tmk-fixture-copies")
    frames = _decoded(fixture(CLIP_A))  # 8 s at 10 fps, 320x240
    copies = {
        "reencoded": Copy(folder / "reencoded.mp4", options={"crf": "36", "preset": "faster"}),
        "rescaled": Copy(folder / "rescaled.mp4", transform=rescale(176, 132)),
        "grey": Copy(folder / "grey.mp4", transform=grey),
        "vp9": Copy(folder / "vp9.webm", "libvpx-vp9", FAST_VP9),
        "letterboxed": Copy(folder / "letterboxed.mp4", transform=letterbox),
        "mirrored": Copy(folder / "mirrored.mp4", transform=mirror),
    }
    encode_copies(iter(frames), list(copies.values()), fps=10)
    out = {f"clip_a {name}": (copy.path, True) for name, copy in copies.items()}
    out[CLIP_B] = (fixture(CLIP_B), False)
    out[ANIMATED_GIF] = (fixture(ANIMATED_GIF), False)
    out["made video 12"] = (encode(folder / "made12.mp4", shots(12)), False)
    boxed = encode(folder / "made13_boxed.mp4", shots(13), transform=letterbox)
    out["made video 13 letterboxed"] = (boxed, False)
    out["made video 14 mirrored"] = (
        encode(folder / "made14.mp4", shots(14), transform=mirror),
        False,
    )
    return out


def test_an_own_list_of_a_bundled_video_flags_its_copies_only(
    fixture_uploads: dict[str, tuple[Path, bool]], tmp_path: Path
) -> None:
    """The decision behaviour without the extended corpus: ``clip_a.mp4`` put on an own list
    (``local:`` source, ``Scanner.add_media``), every copy blocked by its TMK entry, every
    unrelated upload allowed with its best TMK score far below the thresholds."""
    rows = []
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list("ours", kind="block", source="local:")
        entry = scanner.add_media("ours", fixture(CLIP_A), entry_id="clip-a")
        assert entry.counts.get("tmk") == 1, entry
        listed = _value(fixture(CLIP_A))
        for name, (path, is_copy) in fixture_uploads.items():
            verdict = scanner.scan(path)
            tmk_matches = [m for m in verdict.matches if m.hash_type == "tmk"]
            if is_copy:
                assert verdict.action is Action.BLOCK, (name, verdict.reasons)
                assert [m.external_id for m in tmk_matches] == ["clip-a"], name
                evidence = tmk_matches[0].evidence or {}
                level1, level2 = float(evidence["level1"]), float(evidence["level2"])
                assert level1 >= 0.7 and level2 >= 0.7
            else:
                assert verdict.action is Action.ALLOW and not verdict.matches, (name, verdict)
                level1, level2 = _best_tmk_score(listed, path)
                assert level1 < 0.7 or level2 < 0.7, name
            rows.append((name, is_copy, verdict.action.value, level1, level2))
    print("\n| upload | a copy? | verdict | level 1 | level 2 |\n|---|---|---|---|---|")
    for name, is_copy, action, level1, level2 in rows:
        print(f"| {name} | {'yes' if is_copy else 'no'} | {action} | {level1:.3f} | {level2:.3f} |")
