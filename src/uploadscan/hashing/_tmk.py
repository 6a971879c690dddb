"""TMK+PDQF as a hash type: the GIFCT hash-sharing database's whole-video hash.

A value is the ThreatExchange ``HASH_TMK`` text of a reference-layout ``.tmk`` file
(``_tmk_format``); stored, it is the file's bytes. It is computed from the frames of the
video's one decode pass (``TmkFrameSink``): the frames ``ffmpeg -r 15`` would write
(``_tmk_rate``), each scaled to the 64x64 RGB picture the reference hashes, folded into the
running sums (``_tmk_accumulator``).

Matching is the reference's two-level rule, both levels configurable per list:

- level 1, the cosine of the pure-average features, ``>= tmk_level1`` (0.7): shortlisted by a
  faiss index of the unit-length averages (exact inner product, ``IndexKind.VECTOR``), then
  recomputed in float64 so the decision at the threshold is the brute-force one;
- level 2, the TMK score, ``>= tmk_level2`` (0.7): computed for the shortlisted entries only,
  from their stored values, which the index file memory-maps (``_tmk_score``).

The match's measure (``Match.distance``) is the level-2 score; ``Match.evidence`` carries both
scores and the time offset between the two videos.

Beyond the reference, an upload is also queried in extra forms from the same decode: the
left-right mirror (exact algebra on the value, ``transform_hash``) and, when the video has
uniform bars, the value of the picture inside them (``_tmk_bars``), and its mirror. A
letterboxed or mirrored copy of a listed video then matches, where the reference misses it.

Decoding (``TmkMode``): ``FAST`` (the default) lets the decoder skip the frames no other
frame refers to and interpolates the few ffmpeg would keep, and scales with area averaging;
``EXACT`` decodes every frame and scales bicubically like the reference. Measured on the
sample videos, fast scores >= 0.9996 at both levels against the reference's own hash, exact
>= 0.999998; on a 60 s 720p H.264 clip fast uses about 1.6x less CPU than the reference
tool, exact about as much (``benchmarks/bench_video.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from functools import lru_cache, partial
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from .._errors import HashTypeError, IndexFileError, InvalidHashError
from ..media._frames import Frame, FrameSink, FrameTiming, Resample, StreamTiming
from ._protocol import (
    Closeness,
    HashType,
    IndexKind,
    VectorHit,
    VectorMetric,
    VectorSearch,
    VideoHash,
)
from ._tmk_accumulator import FRAME_SIZE, TmkAccumulator
from ._tmk_format import (
    FEATURE_DIMENSION,
    FOURIER_COEFFICIENTS,
    FRAMES_PER_SECOND,
    PERIODS,
    REFERENCE_TMK_BYTES,
    TmkHash,
    decode_text,
    decode_value,
    mirror_hash,
    parse_text,
    parse_tmk,
    pure_average_of,
)
from ._tmk_score import check_compatible, level1_score, level2_score

__all__ = ["TmkFrameSink", "TmkHashType", "TmkMode"]

#: Side of the grey thumbnail bars are found on (0.5 ms per frame; >= 32 px of picture
#: remain for a portrait video pillarboxed into 16:9).
THUMBNAIL_SIZE = 128
#: faiss scores level 1 in float32; the shortlist reaches this far below the threshold so
#: the float64 decision at the threshold is never pre-empted by rounding.
_LEVEL1_SLACK = 1e-5
DEFAULT_LEVEL = 0.7  # both levels (tmk/cpp tmk_default_thresholds.h)


class TmkMode(Enum):
    """How a TMK value is computed from a video (see the module docstring)."""

    FAST = "fast"
    EXACT = "exact"


def _example(seed: int) -> str:
    """A well-formed value with the reference's parameters (unit cos/sin blocks scaled like
    the reference's), for the plug-in contract and docs."""
    rng = np.random.default_rng(seed)
    shape = (len(PERIODS), len(FOURIER_COEFFICIENTS), FEATURE_DIMENSION)
    features = []
    for _ in range(2):
        block = rng.normal(size=shape)
        block /= np.linalg.norm(block, axis=2, keepdims=True)
        scale = np.sqrt(FOURIER_COEFFICIENTS.astype(np.float64))[None, :, None]
        features.append((block * scale).astype(np.float32))
    value = TmkHash(
        frames_per_second=FRAMES_PER_SECOND,
        periods=PERIODS,
        fourier_coefficients=FOURIER_COEFFICIENTS,
        frame_count=900,
        pure_average=(rng.normal(size=FEATURE_DIMENSION) * 50.0).astype(np.float32),
        cos_features=features[0],
        sin_features=features[1],
    )
    return value.to_text()


class _Examples(Sequence[str]):
    """Example values, built on first use (two 351 KB strings nobody needs at import)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return _examples()[index]


@lru_cache(maxsize=1)
def _examples() -> tuple[str, str]:
    return _example(1), _example(2)


@lru_cache(maxsize=32)
def _query_value(text: str) -> TmkHash:
    """Parsed query values: an upload's forms are searched in the base index file and in
    the delta, so each is parsed once."""
    return parse_text(text)


def _unit_average(value: TmkHash) -> npt.NDArray[np.float32] | None:
    average = value.pure_average.astype(np.float64)
    norm = float(np.linalg.norm(average))
    if not norm > 0:
        return None
    out: npt.NDArray[np.float32] = (average / norm).astype(np.float32)[None, :]
    return out


class TmkHashType(HashType):
    """TMK+PDQF (``HASH_TMK``): a whole video, scored at two levels (module docstring)."""

    name = "tmk"
    bits = REFERENCE_TMK_BYTES * 8
    index_kind = IndexKind.VECTOR
    closeness = Closeness.SCORE
    default_threshold = DEFAULT_LEVEL
    threshold_setting = "tmk_level2"
    shortlist_setting = "tmk_level1"
    default_shortlist = DEFAULT_LEVEL
    vector_dim = FEATURE_DIMENSION
    vector_metric = VectorMetric.INNER_PRODUCT
    computed_by_default = True
    description = "TMK+PDQF video hash (ThreatExchange HASH_TMK), two-level score"
    #: Own lists export a listed video's value as the reference's own ``.tmk`` file, one per
    #: value, as tmk-hash-video writes them.
    file_suffix: ClassVar[str | None] = ".tmk"
    example_values: ClassVar[Sequence[str]] = _Examples()

    def __init__(self, mode: TmkMode = TmkMode.FAST) -> None:
        self.mode = mode

    # ------------------------------------------------------------------ values

    def validate(self, value: object) -> str:
        if not isinstance(value, str):
            raise InvalidHashError(f"a TMK value must be a string, got {type(value).__name__}")
        # Either form list files carry (decode_value); the canonical value is the text.
        return parse_tmk(decode_value(value.strip())).to_text()

    def to_bytes(self, value: str) -> bytes:
        data = decode_value(value.strip())
        parse_tmk(data)  # the stored file must be as valid as the text
        return data

    def from_bytes(self, data: bytes) -> str:
        return parse_tmk(data).to_text()

    def check_listable(self, value: str) -> None:
        listed = parse_text(value)
        if not listed.is_reference_compatible():
            raise InvalidHashError(
                "a TMK value must have the reference's parameters (15 fps, periods "
                f"{PERIODS}, 32 Poullot weights) to be compared with uploads; this one has "
                f"{listed.frames_per_second} fps and periods {listed.periods}"
            )
        if listed.frame_count == 0 or _unit_average(listed) is None:
            raise InvalidHashError(
                "a TMK value of an empty or uniform video (zero average feature) matches "
                "nothing and cannot be listed"
            )

    def short_form(self, value: str) -> str:
        """The header and the SHA-256 of the ``.tmk`` file (``sha256sum file.tmk``), instead
        of 351,125 characters."""
        try:
            digest = hashlib.sha256(decode_text(value)).hexdigest()
        except InvalidHashError:
            return value[:40]
        return f"{value[:12]}|sha256:{digest[:16]}"

    # ------------------------------------------------------------------ comparing

    def compare(self, a: str, b: str) -> float:
        """The level-2 score of two values (a match also needs level 1: ``accepts``)."""
        return level2_score(_query_value(self.validate(a)), _query_value(self.validate(b))).score

    def accepts(
        self,
        measure: float,
        evidence: Mapping[str, float | int | str] | None,
        setting: Callable[[str], float | None],
    ) -> bool:
        level1 = (evidence or {}).get("level1")
        if not isinstance(level1, int | float):
            return False  # a hit that was not scored at level 1 is not a TMK match
        need1 = setting("tmk_level1")
        need2 = setting("tmk_level2")
        return level1 >= (DEFAULT_LEVEL if need1 is None else need1) and measure >= (
            DEFAULT_LEVEL if need2 is None else need2
        )

    # ------------------------------------------------------------------ the index

    def vectors(self, code: bytes) -> npt.NDArray[np.generic]:
        """The unit pure average (1, 256), read straight from the stored file."""
        average = pure_average_of(code).astype(np.float64)
        norm = float(np.linalg.norm(average))
        unit = average / norm if norm > 0 else average
        out: npt.NDArray[np.float32] = unit.astype(np.float32)[None, :]
        return out

    def search(self, index: VectorSearch, query: str, shortlist: float) -> list[VectorHit]:
        """Entries whose level 1 reaches ``shortlist``, scored at level 2 from their stored
        values (only these candidates' pages of the memory-mapped file are read)."""
        value = _query_value(query)
        vector = _unit_average(value)
        if vector is None:
            return []
        _, rows, _ = index.range(vector, shortlist - _LEVEL1_SLACK)
        hits = []
        for row in sorted(set(rows.tolist())):
            try:
                listed = parse_tmk(index.payload(row))
            except InvalidHashError as exc:  # the store only holds valid values
                raise IndexFileError(f"TMK index entry {row} is damaged ({exc})") from exc
            try:
                check_compatible(listed, value)
            except InvalidHashError:
                continue  # made with other parameters: it cannot be scored against uploads
            level1 = level1_score(listed, value)
            if level1 < shortlist:
                continue
            level2 = level2_score(listed, value)
            evidence = {
                "level1": level1,
                "level2": level2.score,
                "offset_seconds": round(level2.offset_seconds, 3),
            }
            hits.append(VectorHit(row, level2.score, evidence))
        return hits

    # ------------------------------------------------------------------ computing

    def video_sink(self, *, variants: bool) -> TmkFrameSink:
        return TmkFrameSink(self.mode, variants=variants)


class TmkFrameSink:
    """Builds a video's TMK value from the frames of its decode pass.

    Takes every frame in order (``every_frame``); in ``FAST`` mode it accepts the frames the
    decoder skipped (``accepts_undecoded``), which the accumulator interpolates if ffmpeg
    would keep them. With ``variants`` it also builds the value of the picture inside the
    video's bars, and ``finish`` adds the mirrors as extra query forms.
    """

    def __init__(self, mode: TmkMode = TmkMode.FAST, *, variants: bool = False) -> None:
        self._mode = mode
        self._variants = variants
        self._resample = Resample.AREA if mode is TmkMode.FAST else Resample.BICUBIC
        self._acc: TmkAccumulator | None = None

    @property
    def every_frame(self) -> bool:
        return True

    @property
    def accepts_undecoded(self) -> bool:
        return self._mode is TmkMode.FAST

    def _accumulator(self, stream: StreamTiming) -> TmkAccumulator:
        if self._acc is None:
            self._acc = TmkAccumulator(
                stream_frame_rate=stream.frame_rate,
                single_stream=stream.single_stream,
                start_known=stream.start_known,
                trim_bars=self._variants,
            )
        return self._acc

    def add(self, timestamp: float, frame: Frame) -> None:
        timing = frame.timing
        if timing is None:
            return  # no timestamp: ffmpeg drops the frame too
        acc = self._accumulator(timing.stream)
        kept = frame.keep()  # resized only if ffmpeg's rules keep it, maybe after add returns
        thumbnail = partial(kept.gray, THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        acc.add_frame(
            timing.time,
            partial(kept.rgb, FRAME_SIZE, FRAME_SIZE, self._resample),
            duration=timing.duration,
            thumbnail=thumbnail if acc.wants_thumbnails else None,
        )

    def add_undecoded(self, timestamp: float, timing: FrameTiming) -> None:
        self._accumulator(timing.stream).add_frame(timing.time, None, duration=timing.duration)

    def fork(self) -> TmkFrameSink:
        return TmkFrameSink(self._mode, variants=self._variants)

    def merge(self, later: FrameSink) -> None:
        """A TMK value needs every frame in one order: only an unused sink merges."""
        if isinstance(later, TmkFrameSink) and later._acc is None:
            return
        raise HashTypeError("a TMK value is built from one sequential pass; it cannot merge")

    def finish(self) -> VideoHash:
        acc = self._acc if self._acc is not None else TmkAccumulator()
        value = acc.finish()
        forms: list[TmkHash] = []
        if self._variants:
            forms.append(mirror_hash(value))
            if acc.trimmed_hash is not None:
                forms += [acc.trimmed_hash, mirror_hash(acc.trimmed_hash)]
        return VideoHash(value=value.to_text(), variants=tuple(f.to_text() for f in forms))
