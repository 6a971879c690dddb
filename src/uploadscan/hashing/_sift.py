"""``sift``: crop-robust matching of photos on the platform's own lists, by local features.

PDQ summarises the whole frame, so a 10% crop, a 5 degree tilt, a screenshot or a caption band
moves it as far as a different photo would (measured: 0-7% of such copies found). Local
features survive those edits: a crop keeps most keypoints of the listed photo, a screenshot
keeps them at a smaller scale, an overlay hides only the keypoints under it. Publishers' lists
carry hashes only, so this type is for lists built from the platform's own media
(``Scanner.add_media``), and its values never leave the machine (``shareable = False``): a
descriptor record reveals much more about a picture than a hash does.

A value is one image's ``LFS1`` feature record (``_sift_features``), base64-encoded. Matching
runs in three steps, each in its own module:

1. describe the upload (``_sift_describe``): SIFT, 500 keypoints at 512 px; only when some
   list holds ``sift`` values (the scanner computes what lists hold), so a scanner without
   such a list never even loads OpenCV;
2. shortlist (``_sift_shortlist``): every upload keypoint votes for the listed images among
   its nearest listed keypoints in the faiss index file (IVF-PQ for large lists, exact for
   small ones); an upload and its mirror in one search;
3. verify the best-voted few (``_sift_verify``), in both orientations: one-to-one matches, a
   similarity transform, inliers spread over both images, content agreeing at the centre.

The measure is the number of inliers (larger is closer); the list setting ``sift_inliers``
sets how many a match needs (default 12). The evidence (inliers, fitted scale, rotation,
translation, covered share of the listed image, and a one-line summary) goes into the match
for the moderator.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, overload

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError, FeatureRecordError, InvalidHashError
from ._protocol import (
    Closeness,
    HashType,
    ImageHash,
    IndexKind,
    VectorHit,
    VectorMetric,
    VectorSearch,
)
from ._sift_features import DIM, MAX_FEATURES, WORK_SIZE, Features
from ._sift_shortlist import SHORTLIST_DIM, ivf_factory, shortlist_vectors, votes

if TYPE_CHECKING:
    from ..media._image import DecodedImage
    from ._sift_verify import Verification

__all__ = ["SiftHashType"]

#: Listed images verified per upload (the best-voted); each candidate that fits well but fails
#: a content check (a shared overlay) extends this by one, up to ``_MAX_VERIFY``, so overlay
#: look-alikes cannot use up the shortlist of an upload that is also a copy of a listed photo.
#: Measured: the true entry was first for 97% of copies and among the top 3 for 99%.
CANDIDATES = 3
_MAX_VERIFY = 8
#: Nearest listed keypoints each upload keypoint votes among.
_NEIGHBOURS = 5
#: Default inliers a match needs; the floor a list may set is the verification's own
#: (``Policy.min_inliers``, 8).
DEFAULT_INLIERS = 12
#: A listed image needs this many keypoints (fewer cannot reach the floor reliably: a nearly
#: flat picture); ``add_media`` skips its record with the reason.
_MIN_LISTABLE = 16
#: Longest base64 text of a record (the parser bounds the record itself).
_MAX_TEXT = 4 * ((12 + MAX_FEATURES * (8 + DIM) + 2) // 3)


@functools.lru_cache(maxsize=32)
def _parse(value: str) -> Features:
    """The features of a canonical value (cached: one upload's value is searched against the
    base file and the delta, and ``validate`` parsed it already)."""
    return Features.from_bytes(_decode(value))


def _decode(text: str) -> bytes:
    if len(text) > _MAX_TEXT:
        raise FeatureRecordError(f"sift value of {len(text)} characters is too long")
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise FeatureRecordError(f"sift value is not base64 ({exc})") from None


def _encode(record: bytes) -> str:
    return base64.b64encode(record).decode("ascii")


class _Examples(Sequence[str]):
    """Two example values for the contract test, made on first use (not at import): the
    features of two seeded random scatters of keypoints."""

    @functools.cached_property
    def _values(self) -> tuple[str, ...]:
        out = []
        for seed in (1, 2):
            rng = np.random.default_rng(seed)
            n = 200
            xy = (rng.random((n, 2)) * [WORK_SIZE - 1, 383]).astype(np.float32)
            size = rng.uniform(2.0, 30.0, n).astype(np.float32)
            angle = rng.uniform(0.0, 360.0, n).astype(np.float32)
            desc = rng.integers(0, 120, (n, DIM), dtype=np.uint8)
            out.append(_encode(Features(WORK_SIZE, 384, xy, size, angle, desc).to_bytes()))
        return tuple(out)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._values[index]

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)


class SiftHashType(HashType):
    """Local features (SIFT) of one image; see the module docstring."""

    name = "sift"
    bits = 8 * DIM  # nominal: values vary in size (to_bytes is the whole record)
    index_kind = IndexKind.VECTOR
    closeness = Closeness.SCORE
    default_threshold = DEFAULT_INLIERS
    threshold_setting = "sift_inliers"
    own_lists = True
    second_stage = True
    shareable = False
    min_decode_side = WORK_SIZE
    vector_dim = SHORTLIST_DIM
    vector_metric = VectorMetric.L2
    default_shortlist = CANDIDATES
    description = "local features (SIFT): crops, small rotations, screenshots, captions"
    example_values: ClassVar[Sequence[str]] = _Examples()

    # ------------------------------------------------------------------ values

    def validate(self, value: object) -> str:
        if not isinstance(value, str):
            raise InvalidHashError(f"sift value must be a string, got {type(value).__name__}")
        text = value.strip()
        record = _decode(text)
        Features.from_bytes(record)
        canonical = _encode(record)
        if canonical != text:
            raise FeatureRecordError("sift value is not canonical base64")
        return canonical

    def to_bytes(self, value: str) -> bytes:
        return _decode(self.validate(value))

    def from_bytes(self, data: bytes) -> str:
        Features.from_bytes(data)
        return _encode(bytes(data))

    def check_listable(self, value: str) -> None:
        if len(_parse(value)) < _MIN_LISTABLE:
            raise InvalidHashError(
                f"sift: {len(_parse(value))} keypoints (< {_MIN_LISTABLE}): too flat to list"
            )

    def short_form(self, value: str) -> str:
        """``sift:<keypoints>kp:<width>x<height>:<digest>``: the record itself is ~90 KB."""
        try:
            features = _parse(value)
        except InvalidHashError:
            return f"sift:invalid:{hashlib.sha256(value.encode()).hexdigest()[:16]}"
        digest = hashlib.sha256(value.encode("ascii")).hexdigest()[:16]
        return f"sift:{len(features)}kp:{features.width}x{features.height}:{digest}"

    # ------------------------------------------------------------------ comparing

    def compare(self, a: str, b: str) -> float:
        """Inliers of the better verified direction and orientation (0: no match); symmetric
        by construction, as the contract asks."""
        fa, fb = _parse(self.validate(a)), _parse(self.validate(b))
        best = 0
        for query, listed in ((fa, fb), (fb, fa)):
            found = _verify(query, listed)[0]
            if found is not None:
                best = max(best, found.inliers)
        return float(best)

    def check_threshold(self, setting: str, value: object) -> float:
        from ._sift_verify import DEFAULT_POLICY

        floor = DEFAULT_POLICY.min_inliers
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{setting} must be a whole number of inliers, got {value!r}")
        if value != int(value) or not floor <= value <= MAX_FEATURES:
            raise ConfigError(
                f"{setting} must be a whole number of inliers in [{floor}, {MAX_FEATURES}], "
                f"got {value!r}"
            )
        return float(value)

    # ------------------------------------------------------------------ the index

    def vectors(self, code: bytes) -> npt.NDArray[np.generic]:
        return shortlist_vectors(Features.from_bytes(code))

    def faiss_factory(self, vector_count: int) -> str:
        return ivf_factory(vector_count)[0]

    def faiss_parameters(self, vector_count: int) -> str:
        return ivf_factory(vector_count)[1]

    def search(self, index: VectorSearch, query: str, shortlist: float) -> list[VectorHit]:
        """Shortlist by votes, then verify the best ``shortlist`` candidates (see
        ``CANDIDATES``); hits carry the inlier count and the evidence."""
        features = _parse(query)
        if len(features) < 3 or len(index) == 0:
            return []
        distances, rows = index.nearest(shortlist_vectors(features), _NEIGHBOURS)
        ranked = sorted(votes(rows, distances).items(), key=lambda kv: (-kv[1], kv[0]))
        budget = max(1, int(shortlist))
        hits: list[VectorHit] = []
        for rank, (row, _) in enumerate(ranked[:_MAX_VERIFY]):
            if rank >= budget:
                break
            listed = Features.from_bytes(index.payload(row))
            found, overlay_like = _verify(features, listed)
            if found is not None:
                hits.append(VectorHit(row, float(found.inliers), found.evidence()))
            elif overlay_like:
                budget = min(budget + 1, _MAX_VERIFY)
        return hits

    # ------------------------------------------------------------------ computing

    def hash_image(self, image: DecodedImage, *, variants: bool) -> ImageHash:
        from ._sift_describe import describe_image  # OpenCV loads here, not with the package

        return ImageHash(_encode(describe_image(image.image).to_bytes()))


def _verify(query: Features, listed: Features) -> tuple[Verification | None, bool]:
    """The accepted verification of ``query`` (else of its mirror) against ``listed``, and
    whether either fitted well but failed a content check (the signature of a shared
    overlay)."""
    from ._sift_verify import DEFAULT_POLICY, measure

    policy = DEFAULT_POLICY
    best: Verification | None = None
    overlay_like = False
    for side in (query, None):
        if side is None:
            if best is not None:
                break  # found upright: the mirror cannot be the better explanation
            side = query.mirror()
        for result in measure(side, listed, policy, min_matches=policy.min_inliers):
            if result.accepted(policy):
                if best is None or result.inliers > best.inliers:
                    best = result
            elif result.inliers >= policy.min_inliers:
                overlay_like = True
    return best, overlay_like
