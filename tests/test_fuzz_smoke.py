"""A short, deterministic run of the media fuzzers (the long runs: ``tests/fuzz/fuzz_media.py``).

Every seed must hash, and a few hundred mutants of them must each give a well-formed result
or a typed ``UploadScanError``, within the per-input time and memory limits, in a sandboxed
worker process. Fixed RNG seeds keep the inputs the same from run to run. The seeds are
generated files and bundled fixtures; a second, extended run mutates small real files.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import fuzzlib

RUNS = {"image": 250, "video": 80}


@pytest.mark.parametrize("target", ["image", "video"])
def test_fuzz_smoke(target: str) -> None:
    _fuzz(target, fuzzlib.seed_corpus(target, None))


@pytest.mark.extended
@pytest.mark.parametrize("target", ["image", "video"])
def test_fuzz_smoke_real_seeds(target: str, data_dir: Path) -> None:
    seeds = fuzzlib.seed_corpus(target, data_dir)
    _fuzz(target, {name: data for name, data in seeds.items() if name.startswith("real-")})


def _fuzz(target: str, seeds: dict[str, bytes]) -> None:
    assert seeds
    stats = fuzzlib.Stats()
    with fuzzlib.Runner(timeout=10.0) as runner:
        for name, data in seeds.items():
            runner.run(data, stats)
            reply = runner.last_reply
            assert reply is not None and reply["outcome"].startswith("ok:"), (name, reply)
        inputs = fuzzlib.mutational_inputs(seeds, random.Random(20240), unmutated=False)
        for _ in range(RUNS[target]):
            runner.run(next(inputs), stats)
    report = [f"{f.kind} ({len(f.data)} bytes): {f.detail.strip()[-300:]}" for f in stats.findings]
    assert not report, "\n".join(report)
    assert stats.executions == len(seeds) + RUNS[target]
    # The mutants must reach the decoders, not just fail the sniffing.
    assert sum(n for k, n in stats.outcomes.items() if k.startswith("ok:")) > len(seeds)
    assert stats.outcomes.get("error:CorruptMediaError", 0) > 0


def test_mutations_are_deterministic_and_change_the_input() -> None:
    data = bytes(range(256)) * 8
    a = [fuzzlib.mutate(random.Random(3), data, [data]) for _ in range(20)]
    b = [fuzzlib.mutate(random.Random(3), data, [data]) for _ in range(20)]
    assert a == b
    rng = random.Random(4)
    changed = sum(fuzzlib.mutate(rng, data, [data]) != data for _ in range(200))
    assert changed >= 190
