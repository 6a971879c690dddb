"""Hashing: every hash type as a plug-in, and the one pass that computes them for an upload.

Each type is one module that computes, parses, compares and names its own values
(``_protocol.HashType``): ``_digests`` (MD5, SHA-256), ``_pdq`` (PDQ for images and video
frames, with ``_pdq_algorithm`` and the vPDQ format and match rule in ``_vpdq``),
``_imagehash`` (imagehash's 64-bit hashes), ``_tmk`` (TMK+PDQF for whole videos, with
``_tmk_format``, ``_tmk_score``, ``_tmk_rate``, ``_tmk_accumulator`` and ``_tmk_bars``).
``_registry`` names them; ``_hash_file`` reads, decodes and hashes one upload with whichever
types are wanted.
"""

from ._hash_file import UploadHashes, computable, hash_file, hash_upload, types_for
from ._protocol import (
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
from ._registry import HashTypeRegistry, get, names, register, registry
from ._result import FrameHash, HashResult, Query

__all__ = [
    "Closeness",
    "FrameHash",
    "HashResult",
    "HashType",
    "HashTypeRegistry",
    "ImageHash",
    "IndexKind",
    "Query",
    "UploadHashes",
    "VectorHit",
    "VectorMetric",
    "VectorSearch",
    "VideoHash",
    "VideoSink",
    "computable",
    "get",
    "hash_file",
    "hash_upload",
    "names",
    "register",
    "registry",
    "types_for",
]
