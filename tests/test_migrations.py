"""The Alembic migrations, on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from haulmer_onboarding.cli import main
from haulmer_onboarding.store import Store, customers, metadata, migrations

pytestmark = pytest.mark.both_databases


def schema_differences(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def tables(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


def test_the_migrations_build_exactly_the_tables_module(database_url: str) -> None:
    store = Store(database_url)
    assert migrations.upgrade(store) is True
    assert schema_differences(store) == []
    with store.begin() as conn:
        assert migrations.current_revision(conn) == migrations.head_revision()
    assert migrations.upgrade(store) is False  # current: nothing to do
    store.dispose()


def test_downgrading_to_nothing_and_back(database_url: str) -> None:
    store = Store(database_url)
    store.create_all()
    migrations.downgrade(store, "base")
    assert tables(store) <= {"alembic_version"}
    store.create_all()
    assert schema_differences(store) == []
    store.dispose()


def test_a_database_made_before_migrations_is_adopted_with_its_rows(
    database_url: str,
) -> None:
    store = Store(database_url)
    metadata.create_all(store.engine)  # what create_all did before
    with store.begin() as conn:
        conn.execute(
            customers.insert().values(
                email="antigua@example.cl", name="", created_at=datetime.now(UTC)
            )
        )
    store.create_all()
    with store.begin() as conn:
        assert migrations.current_revision(conn) == migrations.head_revision()
        emails = conn.execute(sa.select(customers.c.email)).scalars().all()
    assert emails == ["antigua@example.cl"]
    store.dispose()


def test_processes_starting_at_once_migrate_once(database_url: str) -> None:
    code = (
        "import sys\n"
        "from haulmer_onboarding.store import Store\n"
        "Store(sys.argv[1]).create_all()\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, database_url]) for _ in range(3)
    ]
    assert [p.wait(60) for p in processes] == [0, 0, 0]
    store = Store(database_url)
    assert schema_differences(store) == []
    store.dispose()


def test_the_migrate_command_upgrades_and_prints_sql(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HAULMER_ONBOARDING_DATABASE_URL", database_url)
    assert main(["migrate", "--sql"]) == 0
    script = capsys.readouterr().out
    assert "CREATE TABLE outbox" in script
    assert "alembic_version" in script
    store = Store(database_url)
    assert tables(store) == set()  # --sql only prints

    assert main(["migrate"]) == 0
    assert migrations.head_revision() in capsys.readouterr().out
    assert schema_differences(store) == []
    store.dispose()


def test_a_new_revision_on_a_current_database_finds_nothing_to_do(
    database_url: str, tmp_path: Path
) -> None:
    store = Store(database_url)
    store.create_all()
    path = Path(migrations.new_revision(store, "nothing", folder=str(tmp_path)))
    store.dispose()
    script = path.read_text(encoding="utf-8")
    assert path.parent == tmp_path
    assert f"down_revision = {migrations.head_revision()!r}" in script
    upgrade = script.split("def upgrade() -> None:")[1].split("def downgrade")[0]
    assert "op." not in upgrade  # the migrations already build every table
