"""The command line as a person runs it: a real process, its output read
through a pipe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import free_port
from haulmer_onboarding.testing.webhooks import post_purchase

CLI = [sys.executable, "-m", "haulmer_onboarding.cli"]
SECRET = "un-secreto-de-la-tienda-para-esta-prueba"


def test_serve_takes_signed_purchases_with_the_environments_webhook_secret(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**os.environ, "HAULMER_ONBOARDING_WEBHOOK_SECRETS": SECRET}
    serve = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--data", str(tmp_path / "datos")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        said = []
        for line in serve.stdout:
            said.append(line)
            if line.startswith("Ctrl-C"):
                break
        webhook = f"http://127.0.0.1:{port}/webhooks/purchases"
        assert f"Purchase webhook: {webhook}\n" in said, said

        purchase = purchase_for("simple", "tienda@example.cl")
        base = f"http://127.0.0.1:{port}"
        assert (
            post_purchase(base, purchase, "otro-secreto-que-no-es").status_code == 401
        )
        answer = post_purchase(base, purchase, SECRET)
        assert answer.status_code == 201, answer.text
    finally:
        serve.send_signal(signal.SIGINT)
        _, errors = serve.communicate(timeout=30)
    assert SECRET not in errors


def test_serve_without_a_webhook_secret_says_the_webhook_is_off(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k != "HAULMER_ONBOARDING_WEBHOOK_SECRETS"
    }
    serve = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--data", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert serve.stdout is not None
        first = serve.stdout.readline()
        assert first.startswith("Purchase webhook off"), first
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=30)


def test_printing_the_migration_sql_into_head_ends_quietly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HAULMER_ONBOARDING_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    printing = subprocess.Popen(
        [*CLI, "migrate", "--sql"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert printing.stdout is not None
    assert printing.stderr is not None
    printing.stdout.readline()
    printing.stdout.close()  # as `| head -1` does
    errors = printing.stderr.read().decode()
    printing.wait(timeout=60)
    assert "Traceback" not in errors, errors
    assert "BrokenPipeError" not in errors


def test_migrate_explains_a_bad_or_unreachable_database_without_its_password(
    tmp_path: Path,
) -> None:
    for url, code, said in (
        ("postgresql+psycopg://yo:s3cretpw@h:notaport/db", 2, "cannot be read"),
        ("postgresql+psycopg://yo:s3cretpw@127.0.0.1:1/db", 1, "cannot reach"),
    ):
        done = subprocess.run(
            [*CLI, "migrate", "--database-url", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, done.stderr
        assert said in done.stderr
        assert "Traceback" not in done.stderr
        assert "s3cretpw" not in done.stderr + done.stdout
