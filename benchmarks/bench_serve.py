"""The HTTP sidecar under load on loopback, against the in-process ``scanner.scan()``.

    python benchmarks/bench_serve.py            # 500 scans per run, 1 M-entry list, ~3-5 min
    python benchmarks/bench_serve.py --quick    # 200 scans per run, 10 k-entry list, ~1 min
    python benchmarks/bench_serve.py --full     # 5,000 scans per run, 1 M-entry list

Uploads: 2 MP JPEGs (1732 x 1155) made at start from the shared photos, a few of them listed by
their reference PDQ (pdqhash on the full decode) among 1 M (``--quick``: 10 k) random PDQ
entries, so some scans block and the rest allow. The service runs in a subprocess via
``uploadscan.serve.serve`` with 1 and 2 workers; the client (httpx, asyncio) sends ``POST
/v1/scan`` raw bodies at concurrency 1, 8 and 32 until N scans are done or the run's time budget
is spent. The client shares the machine's cores with the server, as a sidecar's caller does.

Reported: throughput, p50/p99 latency, errors (any answer but 200, or a wrong verdict), and
the ratio of the service's p50 at concurrency 1 to the in-process ``scanner.scan()`` p50 on the
same uploads (target <= 1.5x: the HTTP hop must not dominate). "scan() p50 in service" is the
scanner's own ``elapsed_ms`` from the verdicts, which splits the latency into scanning and the
HTTP hop.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import find_data_dir, print_machine_info, print_table, summarize_ms

from uploadscan import Scanner
from uploadscan.store._lists import EntryUpsert

SIZE = (1732, 1155)  # 2.0 MP
PHOTOS = [
    "kodak/kodim01.png",
    "kodak/kodim02.png",
    "kodak/kodim03.png",
    "kodak/kodim05.png",
    "kodak/kodim07.png",
    "kodak/kodim08.png",
    "kodak/kodim13.png",
    "kodak/kodim15.png",
    "kodak/kodim19.png",
    "kodak/kodim23.png",
]
LISTED = 3  # the first LISTED photos go on the block list
SEED = 20240607
RUN_BUDGET_S = 240.0
ERRORS: Counter[str] = Counter()


def make_uploads(data_dir: Path) -> list[tuple[bytes, str]]:
    """2 MP JPEG bytes and the PDQ of each (pdqhash on the full decode of that JPEG)."""
    import pdqhash
    from PIL import Image

    out = []
    for rel in PHOTOS:
        with Image.open(data_dir / rel) as im:
            big = im.convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=90)
        data = buf.getvalue()
        with Image.open(io.BytesIO(data)) as decoded:
            bits, _quality = pdqhash.compute(np.asarray(decoded.convert("RGB")))
        out.append((data, np.packbits(bits.astype(np.uint8)).tobytes().hex()))
    return out


def build_home(home: Path, uploads: list[tuple[bytes, str]], n_random: int) -> float:
    rng = np.random.default_rng(SEED)
    raw = rng.integers(0, 256, size=(n_random, 32), dtype=np.uint8)
    upserts = [EntryUpsert("pdq", row.tobytes().hex()) for row in raw]
    upserts += [EntryUpsert("pdq", pdq) for _, pdq in uploads[:LISTED]]
    started = time.perf_counter()
    with Scanner.open(home) as scanner:
        scanner.add_list("bench", kind="block")
        scanner.store.apply_batch("bench", upserts)
        scanner.scan(uploads[0][0])  # builds the index files the workers will map
    return time.perf_counter() - started


def in_process_p50(home: Path, uploads: list[tuple[bytes, str]], n: int) -> tuple[float, float]:
    samples = []
    with Scanner.open(home, audit=True) as scanner:
        for i in range(3):
            scanner.scan(uploads[i % len(uploads)][0])
        for i in range(n):
            t0 = time.perf_counter()
            scanner.scan(uploads[i % len(uploads)][0])
            samples.append(time.perf_counter() - t0)
    return summarize_ms(samples)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(home: Path, workers: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    code = (
        "from uploadscan.serve import serve; "
        f"serve({str(home)!r}, host='127.0.0.1', port={port}, workers={workers}, "
        "log_level='warning', max_concurrency=64)"
    )
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=err)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"service exited: {log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("service did not start within 120 s")
        time.sleep(0.2)


async def load(
    url: str, uploads: list[tuple[bytes, str]], n: int, concurrency: int
) -> tuple[list[float], list[float], int, float]:
    import httpx

    latencies: list[float] = []
    inside: list[float] = []
    errors = 0
    issued = 0
    deadline = time.monotonic() + RUN_BUDGET_S
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        # Warm every connection (and every worker's first-scan setup) outside the timing.
        await asyncio.gather(
            *(client.post("/v1/scan", content=uploads[-1][0]) for _ in range(concurrency))
        )

        async def worker() -> None:
            nonlocal issued, errors
            while issued < n and time.monotonic() < deadline:
                i = issued
                issued += 1
                data, _ = uploads[i % len(uploads)]
                expected = "block" if i % len(uploads) < LISTED else "allow"
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/scan", content=data)
                    ok = r.status_code == 200 and r.json()["action"] == expected
                    if ok:
                        inside.append(r.json()["elapsed_ms"] / 1000.0)
                    else:
                        ERRORS[f"HTTP {r.status_code}: {r.text[:120]}"] += 1
                except httpx.HTTPError as exc:
                    ok = False
                    ERRORS[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, inside, errors, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 k list entries, 200 scans")
    parser.add_argument("--full", action="store_true", help="5,000 scans per run")
    parser.add_argument("-n", type=int, default=None, help="scans per run")
    args = parser.parse_args()
    n = args.n or (5000 if args.full else 200 if args.quick else 500)
    n_random = 10_000 if args.quick else 1_000_000
    data_dir = find_data_dir()
    print_machine_info(
        [
            ("list size", f"{n_random:,} random PDQ + {LISTED} listed"),
            ("scans per run", str(n)),
            ("upload", f"JPEG q90 {SIZE[0]}x{SIZE[1]} ({SIZE[0] * SIZE[1] / 1e6:.1f} MP)"),
        ]
    )
    uploads = make_uploads(data_dir)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        home = Path(tmp) / "home"
        build_s = build_home(home, uploads, n_random)
        print(f"list built and indexed in {build_s:.1f} s\n")
        base_p50, base_p99 = in_process_p50(home, uploads, min(n, 300))
        print("## In-process scanner.scan() (1 thread)")
        print_table(["p50 ms", "p99 ms"], [[base_p50, base_p99]])

        rows = []
        for workers in (1, 2):
            proc, url = start_service(home, workers, Path(tmp) / f"serve-{workers}.log")
            try:
                for concurrency in (1, 8, 32):
                    lat, inside, errors, wall = asyncio.run(load(url, uploads, n, concurrency))
                    p50, p99 = summarize_ms(lat)
                    scan_p50 = summarize_ms(inside)[0] if inside else float("nan")
                    rows.append(
                        [
                            workers,
                            concurrency,
                            len(lat),
                            len(lat) / wall,
                            p50,
                            p99,
                            scan_p50,
                            errors,
                            f"{p50 / base_p50:.2f}x" if concurrency == 1 else "",
                        ]
                    )
            finally:
                proc.terminate()
                proc.wait(30)
        print("## HTTP POST /v1/scan on loopback")
        print_table(
            [
                "workers",
                "concurrency",
                "scans",
                "scans/s",
                "p50 ms",
                "p99 ms",
                "scan() p50 ms in service",
                "errors",
                "p50 / in-process",
            ],
            rows,
        )
        for what, count in ERRORS.most_common():
            print(f"error: {count} x {what}")
        worst = max(float(r[8][:-1]) for r in rows if r[8])
        verdict = "meets" if worst <= 1.5 else "MISSES"
        print(f"concurrency-1 p50 ratio to in-process: worst {worst:.2f}x ({verdict} <= 1.5x)")
        if (os.cpu_count() or 1) <= 2:
            print("note: client and server share the same cores; throughput is a lower bound")


if __name__ == "__main__":
    main()
