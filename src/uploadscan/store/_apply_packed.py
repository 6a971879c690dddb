"""Applying ``PackedUpserts`` (see ``_packed``): diff against the live list, write the diff.

The generic path stages every upsert in a TEMP table and lets SQLite join it against the
list, so re-syncing a million-entry file in which 10 k lines changed still writes a million
staged rows. Here the list's live entries of a type are read back from the live-key index
into arrays, both sides are sorted, and sorted-array searches give exactly which rows are
added, relabelled and removed. Only those touch SQLite, in multi-row statements. Counts,
versions and tombstones are those of the generic path: ``commit_batch`` is shared.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..hashing._registry import registry
from ._apply import commit_batch, validated_deletes
from ._lists import BatchResult
from ._packed import PackedGroup, PackedUpserts, dedupe_sorted, member, row_order

__all__ = ["apply_packed"]

# Rows per multi-row statement: per-statement overhead dominates single-row executemany.
_ROWS_PER_INSERT = 200
_IDS_PER_UPDATE = 500
# Rows per fetch when reading the live list (bounds the Python objects alive at once).
_READ_PAGE = 1 << 16
# Up to this many label sets are told apart with a CASE expression; more use json_each.
_MAX_CASE_LABELS = 64


def apply_packed(
    conn: sqlite3.Connection,
    path: Path,
    list_name: str,
    upserts: PackedUpserts,
    deletes: Iterable[tuple[str, str]],
    *,
    checkpoint: str | None,
    replace: bool,
    mark_synced: bool,
) -> BatchResult:
    """``Store.apply_batch`` for packed upserts; same contract and results."""
    groups = upserts.groups(list_name)  # parses and checks: errors before any lock
    dels = _delete_groups(list_name, deletes)
    for hash_type, gone in dels.items():
        group = groups.get(hash_type)
        if group is not None:  # a delete beats an upsert of the same value
            hit, _ = member(gone, group.codes)
            if hit.any():
                keep = ~hit
                groups[hash_type] = PackedGroup(
                    group.codes[keep], group.label_class[keep], group.labels_json
                )
    staged = sum(g.codes.shape[0] for g in groups.values())

    def apply_type(
        conn: sqlite3.Connection, list_id: int, hash_type: str, version: int, replace: bool
    ) -> tuple[int, int, int]:
        nbytes = registry.get(hash_type).code_bytes
        group = groups.get(hash_type) or PackedGroup(
            np.empty((0, nbytes), np.uint8), np.empty(0, np.int32), []
        )
        gone = dels.get(hash_type, np.empty((0, nbytes), np.uint8))
        return _apply_type(conn, list_id, hash_type, version, replace, group, gone)

    return commit_batch(
        conn,
        path,
        list_name,
        set(groups) | set(dels),
        apply_type,
        staged,
        checkpoint=checkpoint,
        replace=replace,
        mark_synced=mark_synced,
    )


def _delete_groups(
    list_name: str, deletes: Iterable[tuple[str, str]]
) -> dict[str, npt.NDArray[np.uint8]]:
    raw: dict[str, list[bytes]] = {}
    for hash_type, value in validated_deletes(list_name, deletes):
        raw.setdefault(hash_type, []).append(value)
    out = {}
    for hash_type, values in raw.items():
        codes = np.frombuffer(b"".join(values), np.uint8).reshape(len(values), -1)
        codes = codes[row_order(codes)]
        out[hash_type] = codes[dedupe_sorted(codes)]
    return out


def _apply_type(
    conn: sqlite3.Connection,
    list_id: int,
    hash_type: str,
    version: int,
    replace: bool,
    group: PackedGroup,
    gone: npt.NDArray[np.uint8],
) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT count FROM list_counts WHERE list_id = ? AND hash_type = ?", (list_id, hash_type)
    ).fetchone()
    if row is None or row[0] == 0:
        _insert(conn, list_id, hash_type, version, group, np.ones(group.codes.shape[0], bool))
        return group.codes.shape[0], 0, 0
    ids, codes, classes = _live(conn, list_id, hash_type, group.codes.shape[1], group)
    order = row_order(codes)
    ids, codes, classes = ids[order], codes[order], classes[order]
    new_known, _ = member(codes, group.codes)
    in_new, pos = member(group.codes, codes)
    removing = ~in_new if replace else np.zeros(codes.shape[0], bool)
    if gone.shape[0]:
        removing |= member(gone, codes)[0]
    relabel = in_new & ~removing
    if group.codes.shape[0]:
        relabel &= classes != group.label_class[pos] + 1
    _remove(conn, ids[removing], version)
    _relabel(conn, ids[relabel], group, pos[relabel])
    adding = ~new_known
    _insert(conn, list_id, hash_type, version, group, adding)
    return int(adding.sum()), int(relabel.sum()), int(removing.sum())


def _live(
    conn: sqlite3.Connection, list_id: int, hash_type: str, nbytes: int, group: PackedGroup
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """Ids, values and label class of the list's live entries of ``hash_type``.

    The class is k + 1 when an entry has exactly ``group.labels_json[k]`` and no external id
    or extra (nothing to update if the batch gives it that label set), else 0. Ids and values
    come from the covering live-key index; classes are read as exceptions to the batch's
    most common one, so the usual list (one label set throughout) costs one more scan that
    returns nothing.
    """
    cursor = conn.execute(
        "SELECT id, value FROM entries WHERE list_id = ? AND hash_type = ? "
        "AND removed_version IS NULL",
        (list_id, hash_type),
    )
    ids, codes = [], []
    while rows := cursor.fetchmany(_READ_PAGE):
        ids.append(np.fromiter((r[0] for r in rows), np.int64, len(rows)))
        codes.append(np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(-1, nbytes))
    if not ids:
        return np.empty(0, np.int64), np.empty((0, nbytes), np.uint8), np.empty(0, np.int32)
    all_ids = np.concatenate(ids)
    classes = np.zeros(all_ids.shape[0], np.int32)
    labels = group.labels_json
    if not labels:
        return all_ids, np.concatenate(codes), classes
    if len(labels) <= _MAX_CASE_LABELS:
        whens = "".join(f" WHEN ? THEN {k + 1}" for k in range(len(labels)))
        cls_sql = f"CASE labels{whens} ELSE 0 END"
        cls_args: list[object] = list(labels)
    else:
        cls_sql = "coalesce((SELECT key + 1 FROM json_each(?) WHERE value = labels), 0)"
        cls_args = [json.dumps(labels)]
    usual = int(np.bincount(group.label_class).argmax()) + 1
    classes[:] = usual
    odd = conn.execute(
        f"SELECT id, cls FROM (SELECT id, CASE WHEN external_id IS NULL AND extra IS NULL "
        f"THEN {cls_sql} ELSE 0 END AS cls FROM entries WHERE list_id = ? AND hash_type = ? "
        "AND removed_version IS NULL) WHERE cls != ?",
        (*cls_args, list_id, hash_type, usual),
    ).fetchall()
    if odd:
        odd_ids = np.array([r[0] for r in odd], np.int64)
        order = np.argsort(all_ids)
        classes[order[np.searchsorted(all_ids, odd_ids, sorter=order)]] = [r[1] for r in odd]
    return all_ids, np.concatenate(codes), classes


def _remove(conn: sqlite3.Connection, ids: npt.NDArray[np.int64], version: int) -> None:
    values = np.sort(ids).tolist()
    for start in range(0, len(values), _IDS_PER_UPDATE):
        chunk = values[start : start + _IDS_PER_UPDATE]
        conn.execute(
            f"UPDATE entries SET removed_version = ? WHERE id IN ({','.join('?' * len(chunk))})",
            (version, *chunk),
        )


def _relabel(
    conn: sqlite3.Connection,
    ids: npt.NDArray[np.int64],
    group: PackedGroup,
    rows: npt.NDArray[np.intp],
) -> None:
    labels = group.labels_json
    conn.executemany(
        "UPDATE entries SET labels = ?, external_id = NULL, extra = NULL WHERE id = ?",
        zip(
            [labels[c] for c in group.label_class[rows].tolist()],
            ids.tolist(),
            strict=True,
        ),
    )


def _insert(
    conn: sqlite3.Connection,
    list_id: int,
    hash_type: str,
    version: int,
    group: PackedGroup,
    rows: npt.NDArray[np.bool_],
) -> None:
    """Insert the selected rows, in value order (appends to every index on value)."""
    codes = group.codes[rows]
    n, nbytes = codes.shape
    if not n:
        return
    blob = codes.tobytes()
    flat: list[object] = [None] * (2 * n)
    flat[0::2] = [blob[i : i + nbytes] for i in range(0, n * nbytes, nbytes)]
    labels = group.labels_json
    flat[1::2] = [labels[c] for c in group.label_class[rows].tolist()]
    head = (list_id, hash_type, time.time(), version)

    def sql(k: int) -> str:
        pairs = ",".join(["(?, ?)"] * k)
        return (
            "INSERT INTO entries (list_id, hash_type, value, labels, added, added_version) "
            f"SELECT ?1, ?2, column1, column2, ?3, ?4 FROM (VALUES {pairs})"
        )

    step = 2 * _ROWS_PER_INSERT
    full = (len(flat) // step) * step
    if full:
        conn.executemany(
            sql(_ROWS_PER_INSERT),
            ((*head, *flat[i : i + step]) for i in range(0, full, step)),
        )
    if full < len(flat):
        conn.execute(sql((len(flat) - full) // 2), (*head, *flat[full:]))
