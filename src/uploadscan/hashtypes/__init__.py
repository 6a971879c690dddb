"""Hash types for plug-in authors: the protocol, the built-in types, and the registry.

A new hash type is one class (subclass ``HashType``, set its name, size, index kind and
threshold, override what it computes from: ``byte_digest``, ``hash_image`` or
``video_sink``) and one ``register()`` call. It then hashes uploads, syncs from list files and
matches in ``Scanner.scan`` with no change to uploadscan itself. ``uploadscan.testing`` holds
the contract test every type must pass.
"""

from __future__ import annotations

from ..hashing._digests import Md5HashType, Sha256HashType
from ..hashing._imagehash import AHashType, DHashType, PHashType, WHashType
from ..hashing._pdq import PdqHashType
from ..hashing._protocol import (
    Closeness,
    HashType,
    ImageHash,
    IndexKind,
    VectorHit,
    VectorMetric,
    VectorSearch,
    VideoHash,
    VideoSink,
)
from ..hashing._registry import HashTypeRegistry, get, names, register, registry
from ..hashing._tmk import TmkHashType
from ..media._frames import Frame, FrameSink, FrameTiming, Resample, StreamTiming
from ..media._image import DecodedImage

__all__ = [
    "AHashType",
    "Closeness",
    "DHashType",
    "DecodedImage",
    "Frame",
    "FrameSink",
    "FrameTiming",
    "HashType",
    "HashTypeRegistry",
    "ImageHash",
    "IndexKind",
    "Md5HashType",
    "PHashType",
    "PdqHashType",
    "Resample",
    "Sha256HashType",
    "StreamTiming",
    "TmkHashType",
    "VectorHit",
    "VectorMetric",
    "VectorSearch",
    "VideoHash",
    "VideoSink",
    "WHashType",
    "get",
    "names",
    "register",
    "registry",
]
