"""Vector index files: a faiss index over the vectors of a ``VECTOR`` hash type's values.

Some hashes are not compared bit by bit: a TMK video hash is shortlisted by the cosine of its
average frame feature, a photo's local features by their nearest descriptors. The hash type
says how a value becomes vectors (``HashType.vectors``), which metric they use and which faiss
index describes them (``faiss_factory``, exact ``Flat`` unless the type's benchmark shows an
approximate one loses nothing at its threshold), and it runs its own search through the
primitives here (``range``, ``nearest``), verifying candidates against their stored values.

A file holds, in the project's mmap container (``_mmapfile``):

- ``faiss``: the serialised faiss index (faiss's own format; never pickle), deserialised on
  open: the only part loaded into memory, and for a flat index exactly the raw vectors;
- ``owner``: for every indexed vector, the row of the entry it belongs to;
- ``ids``, ``offsets``, ``payload``: the entries' store ids and stored values (``to_bytes``),
  memory-mapped, so verifying a candidate (TMK's level 2, local-feature geometry) reads only
  that candidate's pages, and many worker processes share them.

``VectorIndex.in_memory`` builds the same thing without a file, for the small delta of entries
added since the file was built (searched exactly, whatever the type's factory).

faiss is imported when a vector index is first built or opened, not with the package: most
data directories hold no vector type, and importing faiss costs every process tens of MB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .._errors import IndexFileError
from ..hashing._protocol import HashType, VectorMetric
from ._mmapfile import MappedFile, SectionSpec, SectionWriter, map_file

if TYPE_CHECKING:
    import faiss

__all__ = ["VectorIndex"]

_KIND = "vectors"
_VERSION = 1
#: Vectors (float32 rows) whose IVF centroids are trained on, at most.
_TRAIN_LIMIT = 256 * 1024


def _metric(metric: VectorMetric) -> int:
    import faiss  # deferred: see the module docstring

    if metric is VectorMetric.INNER_PRODUCT:
        return int(faiss.METRIC_INNER_PRODUCT)
    if metric is VectorMetric.L2:
        return int(faiss.METRIC_L2)
    raise IndexFileError(f"no float metric for {metric.value}")


class VectorIndex:
    """The vectors of one hash type's listed values, searchable; see the module docstring."""

    def __init__(
        self,
        hash_type: HashType,
        index: faiss.Index | faiss.IndexBinary,
        owner: npt.NDArray[np.int32],
        ids: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        payload: npt.NDArray[np.uint8],
        mapped: MappedFile | None = None,
    ) -> None:
        self._type = hash_type
        self._index = index
        self._owner = owner
        self.ids = ids
        self._offsets = offsets
        self._payload = payload
        self._mapped = mapped

    # ------------------------------------------------------------------ building

    @staticmethod
    def _encode(
        hash_type: HashType, values: Sequence[bytes]
    ) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.int32]]:
        parts = [hash_type.vectors(v) for v in values]
        binary = hash_type.vector_metric is VectorMetric.HAMMING
        width = hash_type.vector_dim // 8 if binary else hash_type.vector_dim
        dtype = np.uint8 if binary else np.float32
        for number, part in enumerate(parts):
            if part.ndim != 2 or part.shape[1] != width or part.dtype != dtype:
                raise IndexFileError(
                    f"{hash_type.name}: value {number} gives vectors {part.dtype} {part.shape}, "
                    f"expected ({dtype.__name__}, k x {width})"
                )
        vectors = np.concatenate(parts) if parts else np.empty((0, width), dtype)
        owner = np.repeat(np.arange(len(parts), dtype=np.int32), [p.shape[0] for p in parts])
        return np.ascontiguousarray(vectors), owner

    @staticmethod
    def _faiss(
        hash_type: HashType, vectors: npt.NDArray[np.generic], exact: bool
    ) -> faiss.Index | faiss.IndexBinary:
        import faiss  # deferred: see the module docstring

        metric = hash_type.vector_metric
        factory = "Flat" if exact else hash_type.faiss_factory(vectors.shape[0])
        index: faiss.Index | faiss.IndexBinary
        if metric is VectorMetric.HAMMING:
            description = "BFlat" if exact else factory
            index = faiss.index_binary_factory(hash_type.vector_dim, description)
        else:
            index = faiss.index_factory(hash_type.vector_dim, factory, _metric(metric))
        if not index.is_trained and vectors.shape[0]:
            step = max(1, vectors.shape[0] // _TRAIN_LIMIT)
            index.train(vectors[::step])
        if vectors.shape[0]:
            index.add(vectors)
        parameters = "" if exact else hash_type.faiss_parameters(vectors.shape[0])
        if parameters and isinstance(index, faiss.Index):
            # Saved with the index (an IVF's nprobe is part of faiss's serialisation).
            faiss.ParameterSpace().set_index_parameters(index, parameters)  # type: ignore[arg-type]
        return index

    @staticmethod
    def _pack_values(
        values: Sequence[bytes],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        sizes = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
        offsets = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        payload = np.frombuffer(b"".join(values), dtype=np.uint8)
        return offsets, payload

    @classmethod
    def in_memory(
        cls, hash_type: HashType, ids: npt.NDArray[np.int64], values: Sequence[bytes]
    ) -> VectorIndex:
        """An exact index over ``values`` (with store ``ids``), without a file."""
        vectors, owner = cls._encode(hash_type, values)
        offsets, payload = cls._pack_values(values)
        index = cls._faiss(hash_type, vectors, exact=True)
        return cls(hash_type, index, owner, np.asarray(ids, np.int64), offsets, payload)

    @classmethod
    def build(
        cls,
        hash_type: HashType,
        ids: npt.NDArray[np.int64],
        values: Sequence[bytes],
        path: str | os.PathLike[str],
    ) -> VectorIndex:
        """Write the index of ``values`` (with store ``ids``) to ``path`` (atomic replace)."""
        import faiss  # deferred: see the module docstring

        if len(ids) != len(values):
            raise IndexFileError(f"{len(ids)} ids for {len(values)} values")
        vectors, owner = cls._encode(hash_type, values)
        offsets, payload = cls._pack_values(values)
        index = cls._faiss(hash_type, vectors, exact=False)
        if isinstance(index, faiss.IndexBinary):
            blob = faiss.serialize_index_binary(index)
        else:
            blob = faiss.serialize_index(index)
        specs = [
            SectionSpec("faiss", "|u1", (int(blob.shape[0]),)),
            SectionSpec("owner", "<i4", (int(owner.shape[0]),)),
            SectionSpec("ids", "<i8", (len(ids),)),
            SectionSpec("offsets", "<i8", (int(offsets.shape[0]),)),
            SectionSpec("payload", "|u1", (int(payload.shape[0]),)),
        ]
        params = {"hash_type": hash_type.name, "metric": hash_type.vector_metric.value}
        with SectionWriter(path, _KIND, _VERSION, params, specs) as writer:
            writer.append("faiss", blob)
            writer.append("owner", owner)
            writer.append("ids", np.asarray(ids, np.int64))
            writer.append("offsets", offsets)
            writer.append("payload", payload)
        return cls.open(hash_type, path)

    @classmethod
    def open(cls, hash_type: HashType, path: str | os.PathLike[str]) -> VectorIndex:
        """Map ``path`` and load its faiss index; ``IndexFileError`` if missing or damaged."""
        import faiss  # deferred: see the module docstring

        mapped = map_file(path, _KIND, frozenset({_VERSION}))
        try:
            if mapped.params.get("hash_type") != hash_type.name:
                raise ValueError(f"built for {mapped.params.get('hash_type')!r}")
            if mapped.params.get("metric") != hash_type.vector_metric.value:
                raise ValueError("built with another metric")
            sections = mapped.sections
            blob = np.asarray(sections["faiss"], dtype=np.uint8)
            index: faiss.Index | faiss.IndexBinary
            # faiss reads the mapped bytes in place (no copy), then the pages are released:
            # the loaded index is the only resident copy of the vectors.
            if hash_type.vector_metric is VectorMetric.HAMMING:
                index = faiss.deserialize_index_binary(blob)
            else:
                index = faiss.deserialize_index(blob)
            mapped.release("faiss")
            owner = np.asarray(sections["owner"], np.int32)
            ids = np.asarray(sections["ids"], np.int64)
            offsets = np.asarray(sections["offsets"], np.int64)
            payload = np.asarray(sections["payload"], np.uint8)
            if index.ntotal != owner.shape[0] or offsets.shape != (ids.shape[0] + 1,):
                raise ValueError("section sizes do not agree")
            if owner.shape[0] and (owner.min() < 0 or owner.max() >= ids.shape[0]):
                raise ValueError("vector owners out of range")
            if offsets.shape[0] and (
                offsets[0] != 0 or offsets[-1] != payload.shape[0] or np.any(np.diff(offsets) < 0)
            ):
                raise ValueError("payload offsets are not monotonic")
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise IndexFileError(f"vector index {path} is damaged ({exc}); rebuild it") from exc
        return cls(hash_type, index, owner, ids, offsets, payload, mapped)

    def verify(self) -> None:
        """Check every section's checksum (reads the whole file; for repair tools)."""
        if self._mapped is None:
            raise IndexFileError("an in-memory vector index has no file to verify")
        self._mapped.verify()

    # ------------------------------------------------------------------ searching

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def vector_count(self) -> int:
        return int(self._owner.shape[0])

    def payload(self, row: int) -> bytes:
        start, stop = int(self._offsets[row]), int(self._offsets[row + 1])
        return self._payload[start:stop].tobytes()

    def _query(self, vectors: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        binary = self._type.vector_metric is VectorMetric.HAMMING
        return np.ascontiguousarray(vectors, dtype=np.uint8 if binary else np.float32)

    def range(
        self, vectors: npt.NDArray[np.generic], threshold: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(query vector row, entry row, measure) of every stored vector within
        ``threshold``: inner products ``>= threshold``, distances ``<= threshold``."""
        import faiss  # deferred: see the module docstring

        query = self._query(vectors)
        empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        if self.vector_count == 0 or query.shape[0] == 0:
            return empty
        index = self._index
        metric = self._type.vector_metric
        if isinstance(index, faiss.IndexBinary):
            # faiss keeps Hamming distances strictly below the radius.
            lims, scores, labels = index.range_search(query, int(threshold) + 1)
        elif metric is VectorMetric.INNER_PRODUCT:
            # faiss keeps inner products strictly above the radius: step just below it.
            radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
            lims, scores, labels = index.range_search(query, radius)
        else:
            radius = float(np.nextafter(np.float32(threshold), np.float32(np.inf)))
            lims, scores, labels = index.range_search(query, radius)
        counts = np.diff(np.asarray(lims, np.int64)).astype(np.int64)
        rows = np.repeat(np.arange(query.shape[0], dtype=np.int64), counts)
        owners = self._owner[np.asarray(labels, np.int64)].astype(np.int64)
        return rows, owners, np.asarray(scores, np.float32)

    def nearest(
        self, vectors: npt.NDArray[np.generic], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(q, k) measures and entry rows of each query vector's ``k`` nearest vectors
        (entry row -1 where there are fewer than ``k``)."""
        query = self._query(vectors)
        k = max(1, min(int(k), self.vector_count)) if self.vector_count else 0
        if k == 0 or query.shape[0] == 0:
            return np.empty((query.shape[0], 0), np.float32), np.empty(
                (query.shape[0], 0), np.int64
            )
        scores, labels = self._index.search(query, k)
        labels = np.asarray(labels, np.int64)
        rows = np.where(labels >= 0, self._owner[np.clip(labels, 0, None)], -1)
        return np.asarray(scores, np.float32), rows.astype(np.int64)
