"""Memory and link verification with 100,000 journeys in the database.

    .venv/bin/python benchmarks/scale.py [--large 100000] [--small 1000]

Builds two SQLite databases in the same run, a small one (the baseline)
and a large one, with journeys copied from one recorded through the facade
(see ``_population.py``). Then, for each, a fresh process does what a
serving process does all day: opens 500 links spread over the whole
database (verify the signature, look the link up, read the journey),
renders link pages through the web app, runs the worker's rounds, records
purchases and delivers their emails to an SMTP server on loopback. It
prints the peak resident memory of each process and the link verification
rate, each as a ratio to the small database's. Exits 1 when a target is
missed:

- peak memory with the large database at most 1.10x the small one's;
- opening a link on the large database at least 0.8x as fast as on the
  small one (an indexed lookup does not grow with the table).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINKS = 500
ROUNDS = 5


def _child(database_url: str, tokens_file: str) -> None:
    """The measured process: prints one JSON line."""
    from starlette.testclient import TestClient

    from haulmer_onboarding import Onboarding, Settings
    from haulmer_onboarding.testing.scenarios import purchase_for
    from haulmer_onboarding.testing.smtp import SmtpCatcher
    from haulmer_onboarding.tokens import Purpose
    from haulmer_onboarding.web import create_app
    from haulmer_onboarding.worker import Worker

    tokens = Path(tokens_file).read_text().split()
    with SmtpCatcher() as catcher:
        settings = Settings.from_env(database_url=database_url, smtp_port=catcher.port)
        onboarding = Onboarding(settings)

        for token in tokens:  # warm caches and code paths
            onboarding.open_link(token, Purpose.START_SETUP)
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for token in tokens:
                onboarding.open_link(token, Purpose.START_SETUP)
            best = min(best, time.perf_counter() - start)
        bare = float("inf")
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for token in tokens:
                onboarding.signer.read(token, Purpose.START_SETUP)
            bare = min(bare, time.perf_counter() - start)

        with TestClient(create_app(onboarding)) as web:
            for token in tokens[:200]:
                page = web.get(f"/setup/{token}")
                assert page.status_code == 200, page.status_code
        worker = Worker(onboarding)
        for n in range(20):
            onboarding.record_purchase(
                purchase_for("simple", f"nuevo{n}@scale.example.cl")
            )
        for _ in range(3):
            worker.run_once()
        assert len(catcher.messages) == 100, len(catcher.messages)
        onboarding.close()

    # VmHWM starts afresh at exec; ru_maxrss would carry the parent's peak.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = next(int(line.split()[1]) for line in status if line[:6] == "VmHWM:")
    print(
        json.dumps(
            {
                "peak_mib": peak_kib / 1024,
                "open_link_per_s": len(tokens) / best,
                "signer_read_per_s": len(tokens) / bare,
            }
        )
    )


def _measure(onboarding: object, count: int, folder: Path) -> dict[str, float]:
    from _population import setup_tokens

    # Links spread over the whole id range, so lookups touch every part.
    step = max(1, count // LINKS)
    ids = list(range(1, count + 1, step))[:LINKS]
    tokens = setup_tokens(onboarding, ids)  # type: ignore[arg-type]
    tokens_file = folder / "tokens.txt"
    tokens_file.write_text("\n".join(tokens))
    settings = onboarding.settings  # type: ignore[attr-defined]
    env = {
        **os.environ,
        "HAULMER_ONBOARDING_SECRET_KEYS": ",".join(settings.secret_keys),
        "HAULMER_ONBOARDING_SEALING_KEYS": ",".join(settings.sealing_keys),
    }
    # This very script, in a fresh interpreter: what it measures is its own.
    out = subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--child", settings.database_url, str(tokens_file)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return 0

    sys.path.insert(0, str(HERE))
    from _population import populated

    results = {}
    for label, count in (("small", args.small), ("large", args.large)):
        start = time.perf_counter()
        with populated(count) as onboarding:
            built = time.perf_counter() - start
            path = Path(onboarding.settings.database_url.removeprefix("sqlite:///"))
            size = path.stat().st_size / 1e6
            print(f"{label}: {count:,} journeys, {size:,.0f} MB, built in {built:.0f}s")
            results[label] = _measure(onboarding, count, path.parent)

    small, large = results["small"], results["large"]
    print()
    print(
        f"{'journeys':>10}  {'peak MiB':>9}  {'open_link/s':>11}  {'bare read/s':>11}"
    )
    for label, count in (("small", args.small), ("large", args.large)):
        r = results[label]
        print(
            f"{count:>10,}  {r['peak_mib']:>9.1f}  {r['open_link_per_s']:>11,.0f}"
            f"  {r['signer_read_per_s']:>11,.0f}"
        )
    memory = large["peak_mib"] / small["peak_mib"]
    verify = large["open_link_per_s"] / small["open_link_per_s"]
    print()
    print("ratios: large against small, in the same run")
    checks = [
        (f"peak memory ratio {memory:.2f} (needs <= 1.10)", memory <= 1.10),
        (f"open_link rate ratio {verify:.2f} (needs >= 0.80)", verify >= 0.80),
    ]
    for text, ok in checks:
        print(("PASS  " if ok else "FAIL  ") + text)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
