"""Link pages over HTTP under concurrent load, against a bare Starlette route.

    apt-get install wrk            # Debian's package; the load generator
    .venv/bin/python benchmarks/links_http.py [--seconds 8] [--connections 16]

One uvicorn process on 127.0.0.1 serves the web app over a SQLite file with
2,000 journeys, and beside it, on the same server, a bare Starlette route
answering a constant page of the same size. wrk (one thread, keep-alive
connections) loads, in alternating rounds:

- ``GET /bare``: the baseline;
- ``GET /setup/<token>``: the INICIAR SETUP page behind 200 different links
  (verify the link, read the journey, render the page);
- ``POST /setup/<token>/comenzar``: the COMENZAR button on those links (a
  write transaction, then a redirect; pressing it again changes nothing).

It prints requests per second, each as a ratio to the bare route's best
round, and the latency percentiles wrk measured. Exits 1 when the link page
GET serves less than 0.5x the bare route's rate.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
JOURNEYS = 2_000
LINKS = 200
ROUNDS = 3

_LUA = """
-- Each line: a path, then (for a POST) a tab and the form's body.
local paths, bodies = {}, {}
for line in io.lines(os.getenv("BENCH_PATHS")) do
  local path, body = line:match("^([^\t]*)\t?(.*)$")
  paths[#paths + 1] = path
  bodies[#bodies + 1] = body
end
local method = os.getenv("BENCH_METHOD")
local headers = {}
if method == "POST" then
  headers["Content-Type"] = "application/x-www-form-urlencoded"
end
local i = 0
request = function()
  i = i % #paths + 1
  local body = nil
  if method == "POST" then body = bodies[i] end
  return wrk.format(method, paths[i], headers, body)
end
"""


def _serve(port: str, database_url: str, bare_bytes: str) -> None:
    """The server process: the app and the bare route on one uvicorn."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send

    from haulmer_onboarding import Onboarding, Settings
    from haulmer_onboarding.web import create_app

    onboarding = Onboarding(Settings.from_env(database_url=database_url))
    page = "<!doctype html>" + "x" * (int(bare_bytes) - 15)

    async def bare(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    bare_app = Starlette(routes=[Route("/bare", bare)])
    link_app = create_app(onboarding)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # One dispatch on the path: the bare route pays no more than this.
        target = bare_app if scope.get("path") == "/bare" else link_app
        await target(scope, receive, send)

    uvicorn.run(
        app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False
    )


def _wrk(
    url: str, paths: Path, method: str, script: Path, seconds: int, connections: int
) -> dict[str, float]:
    env = {**os.environ, "BENCH_PATHS": str(paths), "BENCH_METHOD": method}
    # Our own interpreter and Debian's wrk, with arguments made here.
    out = subprocess.run(  # noqa: S603
        [
            shutil.which("wrk") or "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    for pct, value, unit in re.findall(r"(\d+)%\s+([\d.]+)(us|ms|s)\b", out):
        factor = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        result[f"p{pct}"] = float(value) * factor
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors[1]) if errors else 0.0
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(*args.serve)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk (Debian)", file=sys.stderr)
        return 2

    sys.path.insert(0, str(HERE))
    from _population import populated, setup_tokens

    from haulmer_onboarding.testing.servers import free_port

    with tempfile.TemporaryDirectory() as work, populated(JOURNEYS) as onboarding:
        folder = Path(work)
        step = JOURNEYS // LINKS
        tokens = setup_tokens(onboarding, list(range(1, JOURNEYS + 1, step)))
        gets = folder / "gets.txt"
        gets.write_text("\n".join(f"/setup/{t}" for t in tokens))
        bares = folder / "bare.txt"
        bares.write_text("/bare")
        script = folder / "rotate.lua"
        script.write_text(_LUA)

        settings = onboarding.settings
        port = free_port()
        env = {
            **os.environ,
            "HAULMER_ONBOARDING_SECRET_KEYS": ",".join(settings.secret_keys),
            "HAULMER_ONBOARDING_SEALING_KEYS": ",".join(settings.sealing_keys),
        }
        url = f"http://127.0.0.1:{port}"
        # The bare page is as long as the link page, so both move as many
        # bytes; measured from a server without the bare route first.
        probe = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                __file__,
                "--serve",
                str(port),
                settings.database_url,
                "100",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            page = _get_when_up(f"{url}/setup/{tokens[0]}")
            # A form behind a link may carry a CSRF token bound to it: the
            # COMENZAR posts send what each link's page holds, as a browser.
            lines = []
            for token in tokens:
                form = httpx.get(f"{url}/setup/{token}").text
                found = re.search(r'name="csrf_token"\s+value="([^"]+)"', form)
                body = f"csrf_token={found[1]}" if found else ""
                lines.append(f"/setup/{token}/comenzar\t{body}")
            posts = folder / "posts.txt"
            posts.write_text("\n".join(lines))
        finally:
            probe.terminate()
            probe.wait()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                __file__,
                "--serve",
                str(port),
                settings.database_url,
                str(len(page)),
            ],
            env=env,
            # wrk drops its connections mid-request when a round ends, which
            # the server reports as tracebacks; failures show as error answers.
            stderr=subprocess.DEVNULL,
        )
        try:
            _get_when_up(url + "/bare")
            best: dict[str, dict[str, float]] = {}
            for _ in range(ROUNDS):
                for label, paths, method in (
                    ("bare Starlette GET", bares, "GET"),
                    ("link page GET", gets, "GET"),
                    ("link POST COMENZAR", posts, "POST"),
                ):
                    result = _wrk(
                        url, paths, method, script, args.seconds, args.connections
                    )
                    if label not in best or result["rate"] > best[label]["rate"]:
                        best[label] = result
        finally:
            server.terminate()
            server.wait()

    base = best["bare Starlette GET"]["rate"]
    print(
        f"{len(page):,}-byte page; wrk -t1 -c{args.connections} -d{args.seconds}s, "
        f"best of {ROUNDS} alternating rounds; latency of that round"
    )
    print()
    head = f"{'route':<20} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p90 ms':>7}"
    print(head + f" {'p99 ms':>7} {'errors':>6}")
    for label, r in best.items():
        print(
            f"{label:<20} {r['rate']:>8,.0f} {r['rate'] / base:>6.2f} "
            f"{r.get('p50', 0):>7.2f} {r.get('p90', 0):>7.2f} {r.get('p99', 0):>7.2f}"
            f" {r['errors']:>6.0f}"
        )
    ratio = best["link page GET"]["rate"] / base
    errors = sum(r["errors"] for r in best.values())
    print()
    ok = ratio >= 0.5 and errors == 0
    print(
        ("PASS" if ok else "FAIL")
        + f"  link page GET {ratio:.2f}x the bare route (needs 0.5), "
        f"{errors:.0f} error answers (needs 0)"
    )
    return 0 if ok else 1


def _get_when_up(url: str) -> bytes:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(url)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        response.raise_for_status()
        return response.content


if __name__ == "__main__":
    sys.exit(main())
