"""The upload-handler examples in examples/, through each framework's own test client.

Every example runs against a real data directory whose lists were synced from list files in
python-threatexchange's format. The listed hashes are computed here with ``pdqhash`` on the full
decode and ``hashlib``, not with uploadscan, so a wrong verdict cannot agree with itself. The
uploads are the bundled fixture scenes and an edited copy made here.

Django settings can be configured once per process, so the Django example is imported once, with
session-wide directories; the Flask and FastAPI examples get fresh ones per test.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _media import fixture, manifest
from _reference import hamming, reference_pdq
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

import uploadscan
from uploadscan.cli import main as cli_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # the limit every example documents

BLOCKED = "scene_a.jpg"
REVIEWED = "scene_c.png"  # PNGs: the examples name what they keep by the sniffed type
CLEAN = "scene_f.png"
#: A JPEG header and then garbage: recognised media that cannot be decoded (the fail mode).
CORRUPT_JPEG = b"\xff\xd8\xff\xe0" + b"not an image, not a video\x00\xff" * 64
#: Bytes that are not media at all: matched by their exact hashes only, then published.
NOT_MEDIA = b"%PDF-1.4\n" + b"a document, not a picture\n" * 64


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py under its own name (Django's ROOT_URLCONF refers to it)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Media:
    blocked: bytes
    blocked_copy: bytes  # resized to half size and recompressed as JPEG
    reviewed: bytes
    clean: bytes
    blocked_pdq: str
    blocked_md5: str
    reviewed_pdq: str
    clean_pdq: str


@pytest.fixture(scope="session")
def media() -> Media:
    blocked = fixture(BLOCKED).read_bytes()
    with Image.open(io.BytesIO(blocked)) as image:
        small = image.convert("RGB").resize((image.width // 2, image.height // 2))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=75)
    reviewed = fixture(REVIEWED).read_bytes()
    clean = fixture(CLEAN).read_bytes()
    m = Media(
        blocked=blocked,
        blocked_copy=buffer.getvalue(),
        reviewed=reviewed,
        clean=clean,
        blocked_pdq=reference_pdq(blocked)[0],
        blocked_md5=hashlib.md5(blocked).hexdigest(),
        reviewed_pdq=reference_pdq(reviewed)[0],
        clean_pdq=reference_pdq(clean)[0],
    )
    # The reference helper reproduces the hashes recorded when the fixtures were made.
    assert m.blocked_pdq == manifest()[BLOCKED].pdq
    assert m.reviewed_pdq == manifest()[REVIEWED].pdq
    # The cases mean what the tests say: the copy is within PDQ's match threshold of the listed
    # image, the clean image is far from both lists.
    assert hamming(reference_pdq(m.blocked_copy)[0], m.blocked_pdq) <= 31
    assert hamming(m.clean_pdq, m.blocked_pdq) > 64
    assert hamming(m.clean_pdq, m.reviewed_pdq) > 64
    return m


def make_home(home: Path, lists_dir: Path, media: Media) -> Path:
    """A data directory with a synced block list and review list, as `uploadscan sync` makes."""
    lists_dir.mkdir(parents=True, exist_ok=True)
    block_file = lists_dir / "blocked.txt"
    block_file.write_text(f"pdq {media.blocked_pdq}\nmd5 {media.blocked_md5}\n")
    review_file = lists_dir / "watch.txt"
    review_file.write_text(f"pdq {media.reviewed_pdq}\n")
    with uploadscan.Scanner.open(home) as scanner:
        scanner.add_list("blocked", kind="block", source=str(block_file))
        scanner.add_list("watch", kind="review", source=str(review_file))
        results = scanner.sync()
    assert [(r.list_name, r.added, r.error) for r in results] == [
        ("blocked", 2, None),
        ("watch", 1, None),
    ]
    return home


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Path:
    root = tmp_path_factory.mktemp("uploadscan")
    return make_home(root / "home", root / "lists", media)


# ----------------------------------------------------------------------------- clients


@dataclass
class Reply:
    status: int
    body: Any
    text: str


@dataclass
class ExampleClient:
    """One example app behind its framework's test client, with the directories it writes."""

    post: Callable[[dict[str, Any]], Reply]  # form fields; a (filename, bytes) value is a file
    upload_dir: Path
    quarantine_dir: Path

    def upload(self, data: bytes, filename: str = "upload.png") -> Reply:
        return self.post({"file": (filename, data)})


@contextmanager
def flask_client(home: Path, tmp: Path) -> Iterator[ExampleClient]:
    app = load_example("flask_app").create_app(
        {
            "TESTING": True,
            "UPLOADSCAN_HOME": str(home),
            "UPLOAD_DIR": str(tmp / "uploads"),
            "QUARANTINE_DIR": str(tmp / "quarantine"),
        }
    )
    client = app.test_client()

    def post(fields: dict[str, Any]) -> Reply:
        form = {
            k: FileStorage(io.BytesIO(v[1]), filename=v[0]) if isinstance(v, tuple) else v
            for k, v in fields.items()
        }
        # Encoded here, in memory: with data=form the test client spools bodies over 500 kB to a
        # temporary file that it never closes (a ResourceWarning, an error under this config).
        boundary, body = encode_multipart(form)
        r = client.post(
            "/uploads", data=body, content_type=f'multipart/form-data; boundary="{boundary}"'
        )
        return Reply(r.status_code, r.get_json(silent=True), r.get_data(as_text=True))

    try:
        yield ExampleClient(post, tmp / "uploads", tmp / "quarantine")
    finally:
        scanner = app.extensions.get("uploadscan")
        if scanner is not None:
            scanner.close()


@contextmanager
def fastapi_client(
    home: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ExampleClient]:
    from fastapi.testclient import TestClient

    monkeypatch.setenv("UPLOADSCAN_HOME", str(home))
    monkeypatch.setenv("UPLOAD_DIR", str(tmp / "uploads"))
    monkeypatch.setenv("QUARANTINE_DIR", str(tmp / "quarantine"))
    with TestClient(load_example("fastapi_app").app) as client:  # runs the lifespan hook

        def post(fields: dict[str, Any]) -> Reply:
            files = {k: v for k, v in fields.items() if isinstance(v, tuple)}
            data = {k: v for k, v in fields.items() if not isinstance(v, tuple)}
            r = client.post("/uploads", files=files or None, data=data or None)
            return Reply(r.status_code, r.json(), r.text)

        yield ExampleClient(post, tmp / "uploads", tmp / "quarantine")


@pytest.fixture(scope="session")
def django_example(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[ExampleClient]:
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    tmp = tmp_path_factory.mktemp("django")
    with pytest.MonkeyPatch.context() as mp:  # the example reads its settings at import
        mp.setenv("UPLOADSCAN_HOME", str(home))
        mp.setenv("UPLOAD_DIR", str(tmp / "uploads"))
        mp.setenv("QUARANTINE_DIR", str(tmp / "quarantine"))
        module = load_example("django_app")
    from django.conf import settings

    assert settings.ROOT_URLCONF == "django_app", "Django settings were configured elsewhere"
    assert Path(module.settings.UPLOADSCAN_HOME) == home
    client = Client(HTTP_HOST="localhost")

    def post(fields: dict[str, Any]) -> Reply:
        form = {
            k: SimpleUploadedFile(v[0], v[1]) if isinstance(v, tuple) else v
            for k, v in fields.items()
        }
        r = client.post("/uploads", form)
        return Reply(r.status_code, json.loads(r.content), r.content.decode())

    yield ExampleClient(post, tmp / "uploads", tmp / "quarantine")
    if module._scanner is not None:
        module._scanner.close()


@pytest.fixture(params=["flask", "django", "fastapi"])
def example(
    request: pytest.FixtureRequest,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ExampleClient]:
    if request.param == "flask":
        with flask_client(home, tmp_path) as client:
            yield client
    elif request.param == "fastapi":
        with fastapi_client(home, tmp_path, monkeypatch) as client:
            yield client
    else:
        yield request.getfixturevalue("django_example")


def stored(directory: Path, verdict_id: str) -> list[Path]:
    return sorted(directory.glob(f"{verdict_id}*")) if directory.is_dir() else []


def all_files(client: ExampleClient) -> set[Path]:
    return {
        p for d in (client.upload_dir, client.quarantine_dir) if d.is_dir() for p in d.iterdir()
    }


# ----------------------------------------------------------------------------- the cases


@pytest.mark.parametrize("which", ["blocked", "blocked_copy"])
def test_listed_image_is_refused_and_not_stored(
    example: ExampleClient, media: Media, which: str
) -> None:
    before = all_files(example)
    reply = example.upload(getattr(media, which))
    assert reply.status == 451
    verdict_id = reply.body["verdict"]
    assert reply.body == {"error": "upload refused", "lists": ["blocked"], "verdict": verdict_id}
    assert len(verdict_id) == 32
    assert all_files(example) == before
    # Neither the listed hashes nor the distance go back to the uploader.
    for secret in (media.blocked_pdq, media.blocked_md5, "distance"):
        assert secret not in reply.text


def test_clean_image_is_saved(example: ExampleClient, media: Media) -> None:
    reply = example.upload(media.clean, filename="../../etc/passwd")
    assert reply.status == 201
    verdict_id = reply.body["verdict"]
    assert reply.body["id"] == f"{verdict_id}.png"  # named by verdict and sniffed type
    assert (example.upload_dir / reply.body["id"]).read_bytes() == media.clean
    assert stored(example.quarantine_dir, verdict_id) == []


def test_review_match_is_quarantined(example: ExampleClient, media: Media) -> None:
    reply = example.upload(media.reviewed)
    assert reply.status == 202
    assert reply.body == {"status": "pending review", "verdict": reply.body["verdict"]}
    verdict_id = reply.body["verdict"]
    [held] = stored(example.quarantine_dir, verdict_id)
    assert held.name == f"{verdict_id}.png"
    assert held.read_bytes() == media.reviewed
    assert stored(example.upload_dir, verdict_id) == []


def test_unreadable_upload_follows_default_fail_mode(example: ExampleClient) -> None:
    reply = example.upload(CORRUPT_JPEG, filename="photo.jpg")
    assert reply.status == 202  # fail mode review: nothing unchecked is published unseen
    [held] = stored(example.quarantine_dir, reply.body["verdict"])
    assert held.read_bytes() == CORRUPT_JPEG


def test_non_media_upload_is_published_after_its_exact_hashes(example: ExampleClient) -> None:
    reply = example.upload(NOT_MEDIA, filename="notes.pdf")
    assert reply.status == 201  # not media, no exact match: the non-media action (allow)
    [kept] = stored(example.upload_dir, reply.body["verdict"])
    assert kept.read_bytes() == NOT_MEDIA


def test_missing_file_field_is_a_client_error(example: ExampleClient) -> None:
    before = all_files(example)
    reply = example.post({"note": "no file here"})
    assert reply.status == 400
    assert "file" in reply.body["error"]
    assert all_files(example) == before


def test_oversized_upload_is_refused_before_scanning(example: ExampleClient) -> None:
    before = all_files(example)
    reply = example.upload(b"\x00" * (MAX_UPLOAD_BYTES + 1))
    assert reply.status == 413
    assert reply.body == {"error": "upload too large"}
    assert all_files(example) == before


# ----------------------------------------------------------------------------- deployment


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_fail_mode_block_refuses_unreadable_upload(
    framework: str, tmp_path: Path, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fail mode is the data directory's setting (config.json), shared by every worker."""
    home = make_home(tmp_path / "home", tmp_path / "lists", media)
    (home / "config.json").write_text(json.dumps({"fail_mode": "block"}))
    clients = (
        flask_client(home, tmp_path)
        if framework == "flask"
        else fastapi_client(home, tmp_path, monkeypatch)
    )
    with clients as client:
        reply = client.upload(CORRUPT_JPEG)
        assert reply.status == 451
        assert reply.body["lists"] == []  # refused because it could not be checked
        assert all_files(client) == set()


def test_review_queue_lists_the_quarantined_upload(
    home: Path, tmp_path: Path, media: Media, capsys: pytest.CaptureFixture[str]
) -> None:
    with flask_client(home, tmp_path) as client:
        verdict_id = client.upload(media.reviewed).body["verdict"]
    capsys.readouterr()
    assert cli_main(["review", "list", "--home", str(home), "--json", "--limit", "1000"]) == 0
    queued = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [item] = [q for q in queued if q["verdict_id"] == verdict_id]
    assert [m["list"] for m in item["matches"]] == ["watch"]


def test_running_app_sees_a_list_synced_by_another_process(tmp_path: Path, media: Media) -> None:
    """The README's deployment: `uploadscan sync` runs beside the workers, no restart."""
    home = make_home(tmp_path / "home", tmp_path / "lists", media)
    with flask_client(home, tmp_path) as client:
        assert client.upload(media.clean).status == 201
        with open(tmp_path / "lists" / "blocked.txt", "a") as fh:
            fh.write(f"pdq {media.clean_pdq}\n")
        sync = subprocess.run(
            [sys.executable, "-m", "uploadscan.cli", "sync", "--home", str(home)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sync.returncode == 0, sync.stderr
        reply = client.upload(media.clean)
        assert reply.status == 451
        assert reply.body["lists"] == ["blocked"]


def test_fastapi_refuses_a_body_without_length(
    home: Path, tmp_path: Path, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI has no body limit of its own; the example's needs a Content-Length to check."""
    from fastapi.testclient import TestClient

    monkeypatch.setenv("UPLOADSCAN_HOME", str(home))
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("QUARANTINE_DIR", str(tmp_path / "quarantine"))
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(media.clean), "a.png")})
    with TestClient(load_example("fastapi_app").app) as client:
        r = client.post(
            "/uploads",
            content=iter([body]),  # a generator: sent chunked, with no Content-Length
            headers={"content-type": f'multipart/form-data; boundary="{boundary}"'},
        )
    assert r.status_code == 411
    assert list((tmp_path / "uploads").iterdir()) == []
