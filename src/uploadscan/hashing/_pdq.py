"""PDQ as a hash type: Meta's 256-bit perceptual hash, for still images and video frames.

PDQ is the industry's shared format for image lists (ThreatExchange, GIFCT, NCMEC), and vPDQ
lists videos as the PDQ of their frames. This module owns what PDQ means to uploadscan:

- values are 64 lowercase hex characters, as ``pdqhash`` and ThreatExchange write them;
  near-blank hashes (very few or very many bits set) are refused for listing, because they
  match every flat image an innocent user uploads;
- a match is a Hamming distance within the list's ``pdq_threshold`` (31 by default, the
  industry convention), from uploads whose quality reaches the list's ``min_quality``;
- an image is queried as computed and, for re-uploads that were flipped, rotated or padded,
  in its 7 other dihedral forms (exact: the DCT of a flipped image, not a sign trick) and as
  the picture inside uniform borders or on a flat screenshot background;
- a video's sampled frames are hashed as they are decoded (``PdqFrameSink``), keeping the
  ones worth looking up; letterboxed frames are hashed with the bars trimmed too.

The arithmetic is in ``_pdq_algorithm``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from .._errors import HashTypeError, InvalidHashError
from ..media._borders import content_box, picture_box
from ..media._frames import REDUCE_MIN_SIDE, Frame, FrameSink, FrameTiming, Luma, block_mean
from ..media._image import DecodedImage
from ..media._limits import Limits
from . import _pdq_algorithm as algorithm
from ._protocol import HashType, ImageHash, IndexKind, VideoHash, bits_set
from ._result import FrameHash
from ._vpdq import DEFAULT_MAX_SPAN, MIN_QUALITY

#: Frames whose PDQ differs from the last kept frame by at most this many bits are duplicates.
DEDUP_DISTANCE = 6


class PdqHashType(HashType):
    """Meta's PDQ: 256-bit perceptual hash, the industry's shared format for image lists."""

    name = "pdq"
    bits = 256
    index_kind = IndexKind.HAMMING
    default_threshold = 31
    threshold_setting = "pdq_threshold"
    review_band_setting = "pdq_action_distance"
    has_quality = True
    per_frame = True
    computed_by_default = True
    description = "PDQ perceptual image hash (256 bits)"
    # From python-threatexchange's PdqSignal.get_examples() (bridge-mods/aaa-orig.jpg, c.png).
    example_values: ClassVar[tuple[str, ...]] = (
        "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
        "e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064",
    )
    min_bits_set: ClassVar[int] = 32

    def check_listable(self, value: str) -> None:
        ones = int(value, 16).bit_count()
        if ones < self.min_bits_set or ones > self.bits - self.min_bits_set:
            raise InvalidHashError(
                f"pdq hash {value} is degenerate ({ones} of 256 bits set): it would match "
                "unrelated near-blank images, so it cannot be listed"
            )

    def listable_mask(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        ones = bits_set(codes)
        return (ones >= self.min_bits_set) & (ones <= self.bits - self.min_bits_set)

    def hash_image(self, image: DecodedImage, *, variants: bool) -> ImageHash:
        luma = image.luma()
        hashes, quality = algorithm.pdq_variants_from_luma(
            luma, image.original_size, dihedral=variants
        )
        extra = hashes[1:]
        if variants:
            extra += _trimmed_variants(luma, image.original_size)
        return ImageHash(hashes[0], quality, extra)

    def video_sink(self, *, variants: bool) -> PdqFrameSink:
        return PdqFrameSink(dihedral=variants)


def _trimmed_variants(luma: Luma, original_size: tuple[int, int]) -> tuple[str, ...]:
    """PDQ variants of the picture inside uniform borders, and of the picture on a flat
    background with interface marks around it (a screenshot), where either is found.

    A letterboxed, padded or screenshot copy of a listed image only matches once the
    surroundings are gone; the trimmed hashes are extra queries, never the image's reported
    PDQ.
    """
    boxes = {box for box in (content_box(luma), picture_box(luma)) if box is not None}
    scale_x = original_size[0] / luma.shape[1]
    scale_y = original_size[1] / luma.shape[0]
    out: tuple[str, ...] = ()
    for top, bottom, left, right in sorted(boxes):
        size = (round((right - left) * scale_x), round((bottom - top) * scale_y))
        cropped = np.ascontiguousarray(luma[top:bottom, left:right])
        out += algorithm.pdq_variants_from_luma(cropped, size, dihedral=True)[0]
    return out


def hash_luma(
    luma: Luma, *, dihedral: bool, original_size: tuple[int, int] | None = None
) -> tuple[tuple[str, ...], int]:
    """PDQ (and its dihedral variants) of a frame's luma plane.

    Large planes are block-averaged first, as still images are reduced; the PDQ operator is
    computed from the original size (``original_size`` when ``luma`` is already a reduced
    plane, else its own), so the result stays the reference algorithm's.
    """
    height, width = luma.shape
    factor = min(height, width) // REDUCE_MIN_SIDE
    reduced = block_mean(luma, factor) if factor > 1 else luma
    size = original_size if original_size is not None else (width, height)
    return algorithm.pdq_variants_from_luma(reduced, size, dihedral=dihedral)


def _hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass
class PdqFrameSink:
    """Hashes a video's sampled frames and keeps the ones worth looking up (vPDQ-compatible).

    Drops frames of quality < 50 (they match everything) and frames within
    ``DEDUP_DISTANCE`` bits of the last kept one, unless that one is ``DEFAULT_MAX_SPAN``
    seconds old: a listed frame stands for at most that much time, so keeping one that often
    lets our own output serve as a list without holes in its time coverage. Letterbox bars:
    lists made by vPDQ hash frames as decoded, bars included, so an upload that adds bars only
    matches after trimming them and an upload of a barred listed video only matches untrimmed;
    a frame with a uniform border is hashed both ways at the same timestamp.
    """

    dihedral: bool = False
    trim: bool = True
    every_frame: bool = False
    dedupe: bool = True
    frames: list[FrameHash] = field(default_factory=list)
    variants: list[tuple[str, ...]] = field(default_factory=list)
    _last: dict[bool, tuple[float, str]] = field(default_factory=dict)

    @property
    def accepts_undecoded(self) -> bool:
        """PDQ hashes the picture of every frame it is given, so it needs them decoded."""
        return False

    def add(self, timestamp: float, frame: Frame) -> None:
        luma, size = frame.luma()
        self.add_luma(timestamp, luma, size)

    def add_undecoded(self, timestamp: float, timing: FrameTiming) -> None:
        """Never called (``accepts_undecoded`` is False): a frame without a picture has no
        PDQ."""

    def add_luma(
        self, timestamp: float, luma: Luma, original_size: tuple[int, int] | None = None
    ) -> None:
        """Hash one frame's luma. ``original_size`` (width, height) when it is reduced."""
        height, width = luma.shape
        size = original_size if original_size is not None else (width, height)
        self._add(timestamp, luma, size, trimmed=False)
        if self.trim:
            box = content_box(luma)
            if box is not None:
                top, bottom, left, right = box
                scale_x, scale_y = size[0] / width, size[1] / height
                cropped = (round((right - left) * scale_x), round((bottom - top) * scale_y))
                self._add(timestamp, luma[top:bottom, left:right], cropped, trimmed=True)

    def _add(self, timestamp: float, luma: Luma, size: tuple[int, int], *, trimmed: bool) -> None:
        hashes, quality = hash_luma(luma, dihedral=self.dihedral, original_size=size)
        if quality < MIN_QUALITY:
            return
        last = self._last.get(trimmed)
        if (
            self.dedupe
            and last is not None
            and timestamp - last[0] < DEFAULT_MAX_SPAN
            and _hamming(last[1], hashes[0]) <= DEDUP_DISTANCE
        ):
            return
        self._last[trimmed] = (timestamp, hashes[0])
        self.frames.append(FrameHash(timestamp=timestamp, pdq=hashes[0], quality=quality))
        if self.dihedral:
            self.variants.append(hashes)

    def fork(self) -> PdqFrameSink:
        return PdqFrameSink(
            dihedral=self.dihedral, trim=self.trim, every_frame=self.every_frame, dedupe=self.dedupe
        )

    def merge(self, later: FrameSink) -> None:
        """Append a later chunk's frames (chunks are hashed in parallel, in time order)."""
        if not isinstance(later, PdqFrameSink):
            raise HashTypeError(f"cannot merge {type(later).__name__} into PdqFrameSink")
        self.frames.extend(later.frames)
        self.variants.extend(later.variants)

    def finish(self) -> VideoHash:
        """The kept frames sorted by time.

        Frames come out in time order from any well-formed file, but damaged timestamps (a
        keyframe whose pts jumps back) can hash a frame at an earlier time after a later one;
        the match rule needs the upload's frames sorted.
        """
        frames, variants = self.frames, self.variants
        if not all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(frames)):
            order = sorted(range(len(frames)), key=lambda i: frames[i].timestamp)
            frames = [frames[i] for i in order]
            variants = [variants[i] for i in order] if variants else []
        return VideoHash(frames=tuple(frames), frame_variants=tuple(variants))


@dataclass(frozen=True, slots=True)
class PdqVideo:
    """A video's kept PDQ frames in time order, and what the decode pass learnt.

    ``variants``: with ``dihedral``, one tuple per frame with the PDQ of the frame and its 7
    rotations/mirrors (original, rot90, rot180, rot270, flip x, flip y, flip +1, flip -1).
    ``frames_decoded`` counts every frame the decoder produced.
    """

    frames: tuple[FrameHash, ...]
    duration: float | None
    width: int | None
    height: int | None
    frames_decoded: int
    variants: tuple[tuple[str, ...], ...] = ()


def hash_video(
    data: bytes,
    media_type: str,
    limits: Limits,
    *,
    interval: float | None = 1.0,
    dihedral: bool = False,
    trim_borders: bool = True,
    dedupe: bool = True,
) -> PdqVideo:
    """PDQ frames of a video or animated image, about one per ``interval`` seconds or better
    (every keyframe included), or of every frame (``interval=None``): what ``uploadscan hash
    --vpdq`` writes. ``dedupe=False`` keeps near-identical consecutive frames too."""
    from ..media._video import decode_video  # PyAV is only loaded for videos

    sink = PdqFrameSink(
        dihedral=dihedral, trim=trim_borders, every_frame=interval is None, dedupe=dedupe
    )
    info = decode_video(
        data, media_type, limits, [sink], interval=1.0 if interval is None else interval
    )
    video = sink.finish()
    return PdqVideo(
        frames=video.frames,
        duration=info.duration,
        width=info.width,
        height=info.height,
        frames_decoded=info.frames_decoded,
        variants=video.frame_variants,
    )
