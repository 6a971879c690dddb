"""The hash-type protocol: one class owns everything that depends on what a hash value means.

A hash type is named (the name is a storage key, never derived from a class name, so renaming
code cannot orphan a store), and it

- **computes** its values from what one read and one decode of an upload produce: the bytes
  (digests), a decoded still image, or the frames of the single decode pass of a video;
- **parses and serialises** its values (``validate``, ``to_bytes``/``from_bytes``) and refuses
  values too degenerate to list (``check_listable``);
- **compares** two values (``compare``), and says which way its measure runs
  (``Closeness``) and which per-list setting holds its threshold;
- **declares its index kind** (``IndexKind``): an exact digest set, a Hamming index, or a
  vector index.

Media intake, the index files, the store, sync, matching and policy only ever go through this
interface, so a new hash type is one module and one ``register()`` call: it then hashes
uploads, syncs from list files and matches in ``scan()`` without any change to the core.
``uploadscan.testing.check_hash_type`` is the contract test every type must pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError, InvalidHashError
from ..media._frames import FrameSink

if TYPE_CHECKING:
    from ..media._image import DecodedImage
    from ..media._intake import ByteDigest
    from ._result import FrameHash

__all__ = [
    "Closeness",
    "HashType",
    "ImageHash",
    "IndexKind",
    "VectorHit",
    "VectorMetric",
    "VectorSearch",
    "VideoHash",
    "VideoSink",
    "bits_set",
]


class IndexKind(Enum):
    """How the values of a type are looked up.

    ``DIGEST``: exact equality of fixed-size values (a hash table). ``HAMMING``: fixed-size
    binary codes within a Hamming distance (multi-index hashing). ``VECTOR``: float vectors
    derived from each value, shortlisted by faiss and confirmed by the type's own comparison.
    """

    DIGEST = "digest"
    HAMMING = "hamming"
    VECTOR = "vector"


class Closeness(Enum):
    """Which way ``compare`` runs: a distance (smaller is closer, match when ``<=`` the
    threshold) or a similarity score (larger is closer, match when ``>=`` the threshold)."""

    DISTANCE = "distance"
    SCORE = "score"


class VectorMetric(Enum):
    """How a ``VECTOR`` type's vectors compare in the index: inner product of unit vectors
    (cosine, larger is closer), squared L2 distance, or Hamming distance of binary vectors
    (uint8 rows, as faiss's binary indexes take them)."""

    INNER_PRODUCT = "inner_product"
    L2 = "l2"
    HAMMING = "hamming"


class VectorSearch(Protocol):
    """What a vector index file offers a ``VECTOR`` hash type's ``search`` (see
    ``index._vectors``). Rows are positions of entries in the file; ``entry_ids`` maps them
    to store ids, ``payload`` gives back a listed value's stored bytes (memory-mapped, so a
    type verifying candidates never loads the whole list)."""

    def range(
        self, vectors: npt.NDArray[np.generic], threshold: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(query vector row, entry row, measure) of every stored vector within
        ``threshold`` of a query vector (``>=`` for inner products, ``<=`` otherwise)."""
        ...

    def nearest(
        self, vectors: npt.NDArray[np.generic], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(q, k) measures and entry rows of each query vector's ``k`` nearest stored
        vectors (entry row -1 where there are fewer)."""
        ...

    def payload(self, row: int) -> bytes:
        """The stored value (``to_bytes``) of the entry at ``row``."""
        ...

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One listed value a ``VECTOR`` type's search confirmed for one query value.

    ``row`` is the entry's row in the searched index; ``measure`` the type's final
    comparison (``closeness`` says which way it runs); ``evidence`` what the verification
    found, shown to moderators and checked against per-list settings by ``accepts``.
    """

    row: int
    measure: float
    evidence: Mapping[str, float | int | str]


@dataclass(frozen=True, slots=True)
class ImageHash:
    """What a hash type computes from one still image.

    ``variants`` are extra query forms (rotations, mirrors, the picture inside trimmed
    borders): they are looked up too, never reported as the image's hash.
    """

    value: str
    quality: int | None = None
    variants: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VideoHash:
    """What a hash type computes from the frames of one video.

    ``value`` is one hash of the whole video (TMK), with its extra query forms (mirrors, the
    picture inside bars) in ``variants``: looked up too, never reported as the video's hash.
    ``frames`` are per-frame hashes in time order (vPDQ), with each frame's extra query forms
    in ``frame_variants`` (empty, or one tuple per frame, original first).
    """

    value: str | None = None
    frames: tuple[FrameHash, ...] = ()
    frame_variants: tuple[tuple[str, ...], ...] = ()
    variants: tuple[str, ...] = ()


class VideoSink(FrameSink, Protocol):
    """A hash type's ``FrameSink`` (see ``media._frames``): it receives the frames of a
    video's one decode pass, and ``finish`` turns what it collected into the type's
    ``VideoHash``."""

    def finish(self) -> VideoHash: ...


_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SETTING = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HEX = re.compile(r"[0-9a-f]+")


class HashType:
    """A named kind of hash. Subclasses set the class attributes and override what applies.

    Values are fixed-size codes of ``bits`` bits written as lowercase hex, unless a type
    overrides ``validate``/``to_bytes``/``from_bytes``. ``compare`` of two values is a Hamming
    distance by default. ``default_threshold`` is the largest distance (or smallest score) that
    still counts as a match when a list does not set its own in ``threshold_setting``; 0 with
    ``IndexKind.DIGEST`` means exact equality only.

    Computing: ``byte_digest`` (a hashlib-like object fed the upload's bytes as they are read),
    ``hash_image`` (a decoded still image), ``video_sink`` (the frames of a video's decode
    pass). A type returns ``None`` from those it does not compute from.
    """

    name: ClassVar[str]
    bits: ClassVar[int]
    index_kind: ClassVar[IndexKind] = IndexKind.HAMMING
    closeness: ClassVar[Closeness] = Closeness.DISTANCE
    default_threshold: ClassVar[float] = 0
    #: The per-list setting that overrides ``default_threshold`` (``None``: not configurable).
    threshold_setting: ClassVar[str | None] = None
    #: A per-list setting: matches beyond it (but within the threshold) go to review rather
    #: than taking a block list's action (``None``: the type has no such band).
    review_band_setting: ClassVar[str | None] = None
    #: Values computed with a quality score: uploads below the list's ``min_quality`` are
    #: not matched by this type (a near-blank picture's hash is noise).
    has_quality: ClassVar[bool] = False
    #: Values describe single video frames; several values given to ``Scanner.lookup`` are
    #: taken as the sampled frames of one video (a second apart).
    per_frame: ClassVar[bool] = False
    #: ``hash_file`` computes it without being asked (others only via ``extra=``).
    computed_by_default: ClassVar[bool] = False
    #: ``hash_image`` needs the full-resolution decode (no reduced JPEG draft decode).
    needs_full_image: ClassVar[bool] = False
    #: ``hash_image`` needs a decode whose long side is at least this many pixels (when the
    #: image has them): a JPEG's reduced draft decode stops shrinking there. Local features
    #: described at a fixed working size say so instead of asking for the full decode.
    min_decode_side: ClassVar[int] = 0
    #: Computed when media is put on one of the platform's own lists, even if ``hash_file``
    #: does not compute it by default (types that need the media at hand: local features).
    own_lists: ClassVar[bool] = False
    #: Costly to compute (local features: tens of milliseconds against PDQ's few): an upload
    #: gets it only after the other types' matches have not already blocked it.
    second_stage: ClassVar[bool] = False
    #: Values may leave the machine when a list is exported for sharing. Types whose values
    #: reveal more about the content than a hash does (local descriptors) say False.
    shareable: ClassVar[bool] = True
    #: Values are exported as files of their own with this suffix (``.tmk``), not as lines.
    file_suffix: ClassVar[str | None] = None
    #: ``VECTOR`` types: the vectors' width and metric, and the per-list setting (with its
    #: default) that bounds the index shortlist before ``search`` verifies candidates.
    vector_dim: ClassVar[int] = 0
    vector_metric: ClassVar[VectorMetric] = VectorMetric.INNER_PRODUCT
    shortlist_setting: ClassVar[str | None] = None
    default_shortlist: ClassVar[float] = 0.0
    description: ClassVar[str] = ""
    example_values: ClassVar[Sequence[str]] = ()

    # ------------------------------------------------------------------ values

    @property
    def is_exact(self) -> bool:
        """True when values only ever match by equality (cryptographic digests)."""
        return self.index_kind is IndexKind.DIGEST

    @property
    def hex_length(self) -> int:
        return self.bits // 4

    @property
    def code_bytes(self) -> int:
        """Size of one stored code (``to_bytes``) for fixed-size types."""
        return self.bits // 8

    def validate(self, value: object) -> str:
        """Return the canonical form of ``value`` or raise ``InvalidHashError`` saying why."""
        if not isinstance(value, str):
            raise InvalidHashError(f"{self.name} hash must be a string, got {type(value).__name__}")
        text = value.strip().lower()
        if len(text) != self.hex_length or not _HEX.fullmatch(text):
            shown = value if len(value) <= 80 else value[:77] + "..."
            raise InvalidHashError(
                f"{self.name} hash must be {self.hex_length} hex characters, got {shown!r}"
            )
        return text

    @property
    def plain_hex(self) -> bool:
        """True when ``validate`` is the base class's: canonical values are exactly the
        lowercase hex strings of ``hex_length``, so bulk code may check them as bytes."""
        return type(self).validate is HashType.validate

    def check_listable(self, value: str) -> None:
        """Raise ``InvalidHashError`` if a valid value must not be put on a list.

        ``value`` must already be canonical (the result of ``validate``): the store calls this
        for every entry it ingests, so it does not validate twice. Perceptual types reject
        values that would match vast swathes of unrelated content (a blank image's hash).
        """

    def listable_mask(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        """``check_listable`` over many values at once: one bool per row of ``codes``
        ((n, code_bytes) uint8, rows of canonical values). Bulk ingest calls this instead of
        ``check_listable`` per value; types with a vectorised rule override it, and this
        default asks ``check_listable`` row by row so a plug-in's rule is never skipped."""
        out = np.ones(codes.shape[0], dtype=np.bool_)
        for i, row in enumerate(codes):
            try:
                self.check_listable(self.from_bytes(row.tobytes()))
            except InvalidHashError:
                out[i] = False
        return out

    def to_bytes(self, value: str) -> bytes:
        return bytes.fromhex(self.validate(value))

    def from_bytes(self, data: bytes) -> str:
        if len(data) != self.code_bytes:
            raise InvalidHashError(f"{self.name} hash must be {self.code_bytes} bytes")
        return data.hex()

    def short_form(self, value: str) -> str:
        """How a value is shown in verdicts and reports (large values are abbreviated)."""
        return value

    # ------------------------------------------------------------------ comparing

    def compare(self, a: str, b: str) -> float:
        """Distance (or score, see ``closeness``) between two values of this type."""
        x = int(self.validate(a), 16) ^ int(self.validate(b), 16)
        return x.bit_count()

    def distance(self, a: str, b: str) -> int:
        """Hamming distance in bits (kept for fixed-size binary types)."""
        return int(self.compare(a, b))

    def within(self, measure: float, threshold: float) -> bool:
        """Whether ``measure`` (a result of ``compare``) is a match at ``threshold``."""
        if self.closeness is Closeness.SCORE:
            return measure >= threshold
        return measure <= threshold

    def check_threshold(self, setting: str, value: object) -> float:
        """Validate a list's value for one of this type's settings (``ConfigError``)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{setting} must be a number, got {value!r}")
        number = float(value)
        if self.closeness is Closeness.DISTANCE:
            if not 0 <= number <= self.bits:
                raise ConfigError(f"{setting} must be in [0, {self.bits}], got {value!r}")
            if number != int(number):
                raise ConfigError(f"{setting} must be a whole number of bits, got {value!r}")
        elif not -1.0 <= number <= 1.0:
            raise ConfigError(f"{setting} must be a score in [-1, 1], got {value!r}")
        return number

    def accepts(
        self,
        measure: float,
        evidence: Mapping[str, float | int | str] | None,
        setting: Callable[[str], float | None],
    ) -> bool:
        """Whether a match measured ``measure`` passes a list whose settings ``setting``
        returns (``None``: the type's default). Types with more than one threshold (TMK's
        two levels) override this."""
        name = self.threshold_setting
        value = setting(name) if name is not None else None
        return self.within(measure, float(self.default_threshold) if value is None else value)

    # ------------------------------------------------------------------ vector types

    def vectors(self, code: bytes) -> npt.NDArray[np.generic]:
        """The (k, vector_dim) vectors a listed value is indexed under (``VECTOR`` types)."""
        raise NotImplementedError(f"{self.name} is not a vector hash type")

    def faiss_factory(self, vector_count: int) -> str:
        """The faiss index description for ``vector_count`` vectors (exact by default; a
        type may choose an approximate one only where its benchmark shows recall at its
        threshold equal to brute force)."""
        return "BFlat" if self.vector_metric is VectorMetric.HAMMING else "Flat"

    def faiss_parameters(self, vector_count: int) -> str:
        """faiss search parameters for the index ``faiss_factory`` describes, in
        ``faiss.ParameterSpace`` syntax (``"nprobe=4"``); stored with the index file."""
        return ""

    def search(self, index: VectorSearch, query: str, shortlist: float) -> list[VectorHit]:
        """Listed values matching ``query`` in ``index`` (``VECTOR`` types): shortlist with
        the index (``shortlist`` from the lists' settings), then verify each candidate."""
        raise NotImplementedError(f"{self.name} is not a vector hash type")

    # ------------------------------------------------------------------ computing

    def byte_digest(self) -> ByteDigest | None:
        """A fresh hashlib-like object to feed the upload's bytes, for byte-level types."""
        return None

    def hash_image(self, image: DecodedImage, *, variants: bool) -> ImageHash | None:
        """This type's hash of a still image (``variants``: also its extra query forms)."""
        return None

    def video_sink(self, *, variants: bool) -> VideoSink | None:
        """A sink for the frames of a video's decode pass, for frame-based types."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def check_declaration(hash_type: HashType) -> None:
    """Raise ``HashTypeError`` when a type's class attributes cannot work (at registration)."""
    from .._errors import HashTypeError

    name = getattr(hash_type, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HashTypeError(f"hash type name must match [a-z][a-z0-9_]* (<= 32), got {name!r}")
    if not isinstance(hash_type, HashType):
        raise HashTypeError(f"hash type {name!r} must subclass uploadscan.hashtypes.HashType")
    bits = getattr(hash_type, "bits", None)
    if not isinstance(bits, int) or isinstance(bits, bool) or bits <= 0 or bits % 8:
        raise HashTypeError(f"hash type {name!r}: bits must be a positive multiple of 8")
    if not isinstance(hash_type.index_kind, IndexKind):
        raise HashTypeError(f"hash type {name!r}: index_kind must be an IndexKind")
    if hash_type.index_kind is IndexKind.DIGEST and hash_type.default_threshold != 0:
        raise HashTypeError(f"hash type {name!r}: a digest matches exactly (threshold 0)")
    for setting in declared_settings(hash_type):
        if not _SETTING.fullmatch(setting):
            raise HashTypeError(f"hash type {name!r}: bad setting name {setting!r}")
    if hash_type.index_kind is IndexKind.VECTOR:
        overridden = type(hash_type).search is not HashType.search
        if hash_type.vector_dim <= 0 or not overridden:
            raise HashTypeError(
                f"hash type {name!r}: a vector type declares vector_dim and implements "
                "vectors() and search()"
            )


def declared_settings(hash_type: HashType) -> tuple[str, ...]:
    """The per-list settings a type declares (its thresholds), in a stable order."""
    names = (
        hash_type.threshold_setting,
        hash_type.review_band_setting,
        hash_type.shortlist_setting,
    )
    return tuple(dict.fromkeys(n for n in names if n is not None))


def bits_set(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int32]:
    """Number of set bits in each row of an (n, nbytes) uint8 array."""
    ones: npt.NDArray[np.int32] = np.bitwise_count(codes).sum(axis=1, dtype=np.int32)
    return ones
