"""The OpenAPI 3.1 description of the sidecar, served at ``/openapi.json``.

Written out as data rather than generated: the service has eight operations, and a client
author reads this file. The tests send generated requests to every operation listed here and
check that each answer's status is one this document declares.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_spec"]

_JSON = "application/json"
#: Examples from python-threatexchange's PdqSignal / VideoMD5Signal example values.
_EXAMPLE_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
_EXAMPLE_MD5 = "cab08b36195edb1a1231d2d09fa450e0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(description: str, schema: str, headers: dict[str, Any] | None = None) -> Any:
    out: dict[str, Any] = {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}
    if headers:
        out["headers"] = headers
    return out


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}

_ERRORS: dict[str, Any] = {
    "401": _json_response("Missing or wrong bearer token (only when a token is set).", "Error"),
    "503": _json_response(
        "Saturated (every request slot busy), the scan timed out, or the store is unavailable.",
        "Error",
        _RETRY_AFTER,
    ),
}

_UPLOAD_ERRORS: dict[str, Any] = {
    "400": _json_response(
        "Empty upload, or a multipart body without a `file` field or with more than one.",
        "Error",
    ),
    "408": _json_response(
        "The body did not start within the receive timeout, then arrived slower than the "
        "minimum rate (`too_slow`), or took longer than the request timeout (`timeout`).",
        "Error",
    ),
    "413": _json_response("The body is larger than the configured limit.", "Error"),
    **_ERRORS,
}

_MATCH = {
    "type": "object",
    "required": ["list", "list_kind", "entry_id", "hash_type", "value", "distance", "action"],
    "properties": {
        "list": {"type": "string"},
        "list_kind": {"enum": ["block", "review", "allow"]},
        "list_version": {"type": "integer"},
        "entry_id": {"type": "integer"},
        "external_id": {"type": ["string", "null"]},
        "hash_type": {"type": "string"},
        "value": {"type": "string"},
        "distance": {"type": "integer", "minimum": 0},
        "action": {"enum": ["allow", "review", "block"]},
        "labels": {"type": "array", "items": {"type": "string"}},
        "query": {"type": "string"},
        "video": {"type": "string"},
        "coverage": {"type": ["number", "null"]},
        "timestamps": {"type": "array", "items": {"type": "number"}},
        "evidence": {"type": "object"},
    },
}

_VERDICT = {
    "type": "object",
    "description": "What the platform should do with the upload, and why.",
    "required": ["id", "action", "matches", "hashes", "errors", "list_versions", "reasons"],
    "properties": {
        "id": {"type": "string", "description": "Stable id; review decisions refer to it."},
        "action": {"enum": ["allow", "review", "block"]},
        "matches": {"type": "array", "items": _ref("Match")},
        "hashes": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "errors": {
            "type": "array",
            "description": "Why the upload could not be hashed (the action is then the "
            "fail mode, review by default).",
            "items": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "list_versions": {"type": "object", "additionalProperties": {"type": "integer"}},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "media_type": {"type": ["string", "null"]},
        "elapsed_ms": {"type": "number"},
        "created": {"type": "number"},
    },
}

_UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "The upload itself, any content type; the type is sniffed.",
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
    },
}


def openapi_spec(*, refusal_status: int = 451) -> dict[str, Any]:
    """The document, with the configured pict-rs refusal status filled in."""
    query_token: list[dict[str, list[str]]] = [{"bearer": []}, {"queryToken": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "uploadscan sidecar",
            "version": "1",
            "description": "Match uploads against local hash lists of known terrorist and "
            "violent-extremist content. Uploads are scanned in memory and never stored.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/scan": {
                "post": {
                    "operationId": "scan",
                    "summary": "Scan one upload",
                    "requestBody": _UPLOAD_BODY,
                    "responses": {
                        "200": _json_response(
                            "The verdict. Bad media is not an HTTP error: the verdict carries it.",
                            "Verdict",
                        ),
                        **_UPLOAD_ERRORS,
                    },
                }
            },
            "/v1/lookup": {
                "post": {
                    "operationId": "lookup",
                    "summary": "Match precomputed hashes",
                    "requestBody": {
                        "required": True,
                        "content": {_JSON: {"schema": _ref("LookupRequest")}},
                    },
                    "responses": {
                        "200": _json_response("The verdict.", "Verdict"),
                        "400": _json_response(
                            "Not a JSON object, an unknown hash type or an invalid hash "
                            "(the message names it).",
                            "Error",
                        ),
                        "413": _json_response("Body over 1 MiB or over 10,000 hashes.", "Error"),
                        "408": _UPLOAD_ERRORS["408"],
                        **_ERRORS,
                    },
                }
            },
            "/v1/pictrs/validate": {
                "post": {
                    "operationId": "pictrsValidate",
                    "summary": "pict-rs external_validation hook",
                    "description": "pict-rs POSTs each upload's bytes here and keeps (and "
                    "publishes) the upload only on a 2XX answer. Blocked uploads and, unless "
                    "the service runs with `--pictrs-review accept`, uploads for review are "
                    f"refused with {refusal_status}. Bytes that are not media are judged like "
                    "media that cannot be decoded: the fail mode (review by default). pict-rs "
                    "cannot send headers, so the token may be given as `?token=`.",
                    "security": query_token,
                    "requestBody": {
                        "required": True,
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "responses": {
                        "200": _json_response("Accepted; the verdict.", "Verdict"),
                        str(refusal_status): _json_response("Refused.", "Refusal"),
                        **_UPLOAD_ERRORS,
                    },
                }
            },
            "/m/lookup": {
                "get": {
                    "operationId": "hmaLookup",
                    "summary": "hasher-matcher-actioner compatible lookup",
                    "description": "Same query and answer as HMA's GET /m/lookup: hash lists "
                    "are HMA banks, list entries bank contents. HMA's `video_md5` is `md5`.",
                    "security": query_token,
                    "parameters": [
                        {"name": "signal", "in": "query", "schema": {"type": "string"}},
                        {"name": "signal_type", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "banks",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "Comma-separated list names to restrict to.",
                        },
                    ],
                    "responses": {
                        "200": _json_response("Matches by bank.", "HmaLookupResponse"),
                        "400": _json_response("Missing, unknown or invalid signal.", "HmaError"),
                        "401": _json_response("Missing or wrong token.", "HmaError"),
                        "403": _json_response("`url` lookups are not supported.", "HmaError"),
                        "408": _json_response("Timed out.", "HmaError"),
                        "503": _json_response("Saturated or unavailable.", "HmaError"),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness (no token needed)",
                    "security": [],
                    "responses": {"200": _json_response("The process is up.", "Health")},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: store version and list freshness",
                    "responses": {
                        "200": _json_response("Ready.", "Readiness"),
                        "401": _ERRORS["401"],
                        "503": _json_response(
                            "Not ready: no list is configured, or a block or review list has "
                            "never completed a sync or is older than its maximum age (every "
                            "verdict would take the fail mode); `problems` says which.",
                            "Readiness",
                        ),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "responses": {
                        "200": {
                            "description": "Metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _ERRORS["401"],
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1.",
                            "content": {_JSON: {"schema": {"type": "object"}}},
                        },
                        "401": _ERRORS["401"],
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token"},
            },
            "schemas": {
                "Verdict": _VERDICT,
                "Match": _MATCH,
                "LookupRequest": {
                    "type": "object",
                    "description": "Hash-type name to one value or a list of values.",
                    "minProperties": 1,
                    "additionalProperties": {
                        "oneOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        ]
                    },
                    "example": {"pdq": _EXAMPLE_PDQ, "md5": [_EXAMPLE_MD5]},
                },
                "Error": {
                    "type": "object",
                    "description": "Every error but /m/lookup's, unknown routes (404) and "
                    "methods (405) included.",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
                "Refusal": {
                    "type": "object",
                    "required": ["error", "message", "verdict"],
                    "properties": {
                        "error": {"enum": ["blocked", "review"]},
                        "message": {"type": "string"},
                        "verdict": _ref("Verdict"),
                    },
                },
                "HmaError": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string"}},
                },
                "HmaLookupResponse": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["bank_content_id", "distance"],
                            "properties": {
                                "bank_content_id": {"type": "integer"},
                                "distance": {"type": "string"},
                            },
                        },
                    },
                },
                "Health": {
                    "type": "object",
                    "properties": {"status": {"const": "ok"}},
                },
                "Readiness": {
                    "type": "object",
                    "required": ["status", "store_version", "lists", "problems", "warnings"],
                    "properties": {
                        "status": {"enum": ["ready", "not_ready"]},
                        "store_version": {"type": "integer"},
                        "lists": {"type": "array", "items": _ref("ListState")},
                        "problems": {"type": "array", "items": _ref("ReadinessProblem")},
                        "warnings": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "ListState": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"enum": ["block", "review", "allow"]},
                        "version": {"type": "integer"},
                        "entry_count": {"type": "integer"},
                        "last_sync": {"type": ["number", "null"]},
                        "age_seconds": {"type": ["number", "null"]},
                        "max_age_seconds": {"type": ["number", "null"]},
                        "sync_state": {"enum": ["current", "never_synced", "stale"]},
                    },
                },
                "ReadinessProblem": {
                    "type": "object",
                    "required": ["list", "state", "message"],
                    "properties": {
                        "list": {"type": ["string", "null"]},
                        "state": {"enum": ["never_synced", "stale", "no_lists"]},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    }
