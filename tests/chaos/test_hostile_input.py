"""Hostile and bad input: injection strings against every entry point that
takes a name, payload sizes, malformed URLs and DSNs, a missing database,
a wrong password."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from taskmaster_core import (
    BrokerError,
    ConfigurationError,
    JobState,
    NewJob,
    PayloadTooLargeError,
    Publisher,
    Settlement,
    UnknownSerializerError,
    open_broker,
)
from taskmaster_core._cli import main
from taskmaster_core._publisher import DEFAULT_MAX_PAYLOAD_SIZE
from taskmaster_postgres import PostgresBroker
from taskmaster_postgres._schema import LATEST_VERSION
from tests.pg_fixtures import unique_schema
from tests.pg_servers import own_server
from tests.postgres.helpers import Recorder

from .helpers import ChaosDB

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

CANARY = "chaos_canary"

HOSTILE = [
    f"'; DROP TABLE {CANARY}; --",
    f'"; DROP TABLE {CANARY}; --',
    f"$$; DROP TABLE {CANARY}; $$",
    f"$taskmaster$; DROP TABLE {CANARY}; $taskmaster$",
    f"Robert'); DROP TABLE {CANARY};--",
    "q' OR '1'='1",
    "%s %(queue)s {t} {} ?",
    "\\'; SELECT pg_sleep(10); --",
    'a"b""c\'d',
    "Ωμέγα 🚀 队列",
    "line\nbreak\ttab",
    "UPPER lower MiXeD",
    "x" * 1000,
]
"""Each is a legal name: it must be stored and used literally."""

IDENTIFIERS = [h for h in HOSTILE if len(h.encode()) <= 63] + ["y" * 63]


def key(name: str) -> str:
    """The name as a dedup key (those are limited to 512 bytes)."""
    return name.encode()[:512].decode(errors="ignore")


@pytest.fixture
def canary(chaos: ChaosDB) -> Iterator[None]:
    """A table every injection string tries to drop (it resolves through the
    search path, as an injected statement would)."""
    chaos.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS public.{} (x int)").format(sql.Identifier(CANARY))
    )
    yield
    ((exists,),) = chaos.execute("SELECT to_regclass(%s) IS NOT NULL", [f"public.{CANARY}"])
    assert exists, "an injection string was executed as SQL"
    chaos.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(CANARY)))


@pytest.mark.usefixtures("canary")
def test_names_from_callers_are_stored_and_used_literally(chaos: ChaosDB) -> None:
    broker = chaos.broker
    publisher = Publisher(broker)
    heard = Recorder()
    broker.subscribe(HOSTILE, heard)
    for name in HOSTILE:
        job_id = publisher.put(name, {"name": name}, dedup_key=key(name), headers={name: name})
        assert job_id is not None
        assert publisher.put(name, {}, dedup_key=key(name)) is None  # taken, literally
        heard.wait_for(name)  # NOTIFY carried the name intact
        (info,) = broker.jobs(queue=name)
        assert (info.id, info.queue, info.dedup_key, info.headers) == (
            job_id,
            name,
            key(name),
            {name: name},
        )
        (stats,) = broker.stats([name])
        assert stats.ready == 1
        (claimed,) = broker.claim([name], 10, 30)
        assert claimed.id == job_id and claimed.headers == {name: name}
        assert (
            broker.settle([Settlement(id=job_id, token=claimed.token, kind="fail", error=name)])
            == []
        )
        assert broker.jobs(ids=[job_id])[0].last_error == name
        assert broker.requeue(queue=name) == 1
        (claimed,) = broker.claim([name], 10, 30)
        broker.settle([Settlement(id=job_id, token=claimed.token, kind="ack")])
        assert broker.prune(0, queue=name) == 1
        assert broker.delete(queue=name) == 0
    # Serializer names: unknown ones are refused by the publisher, and a job
    # stored with one (by another program) keeps it literally.
    for name in HOSTILE:
        with pytest.raises(UnknownSerializerError, match="unknown serializer"):
            Publisher(broker, serializer=name)
        with pytest.raises(UnknownSerializerError):
            publisher.put("q", 1, serializer=name)
    ids = broker.put([NewJob(queue="q", payload=b"1", serializer=name) for name in HOSTILE])
    assert [j.serializer for j in broker.jobs(ids=[i for i in ids if i])] == HOSTILE
    assert {c.serializer for c in broker.claim(["q"], 100, 30)} == set(HOSTILE)


@pytest.mark.usefixtures("canary")
@pytest.mark.parametrize("name", IDENTIFIERS, ids=range(len(IDENTIFIERS)))
def test_schema_and_table_names_are_identifiers_never_sql(chaos: ChaosDB, name: str) -> None:
    broker = PostgresBroker(chaos.dsn, schema=name, table=name, keep_done=True)
    with broker:
        try:
            broker.migrate()
            broker.migrate()  # idempotent, also with this name
            assert broker.schema_version() == LATEST_VERSION
            broker.pause(["q"])  # the queues table, named after the hostile table
            assert broker.paused() == ["q"]
            broker.resume(["q"])
            heard = Recorder()
            broker.subscribe(["q"], heard)
            (job_id,) = Publisher(broker).put_many("q", [1])
            heard.wait_for("q")  # the trigger notifies on the table's channel
            (claimed,) = broker.claim(["q"], 1, 30)
            assert broker.extend([claimed], 30) == []
            broker.settle([Settlement(id=claimed.id, token=claimed.token, kind="ack")])
            assert broker.jobs(ids=[job_id])[0].state == JobState.DONE
            ((schema, table),) = chaos.execute(
                "SELECT n.nspname, c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname = %s",
                [name, name],
            )
            assert (schema, table) == (name, name)
            broker.drop_jobs_table()
            assert broker.schema_version() == 0
        finally:
            chaos.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_names_postgres_cannot_hold_are_refused_clearly(chaos: ChaosDB) -> None:
    publisher = Publisher(chaos.broker)
    with pytest.raises(ConfigurationError, match="over the limit of 1000"):
        publisher.put("x" * 1001, 1)
    with pytest.raises(ConfigurationError, match="over the limit of 2000 bytes"):
        publisher.put("\U0001f600" * 501, 1)  # 501 characters, 2004 bytes
    with pytest.raises(ConfigurationError, match="over the limit of 512 bytes"):
        publisher.put("q", 1, dedup_key="k" * 513)
    with pytest.raises(ConfigurationError, match="NUL"):
        publisher.put("a\x00b", 1)
    with pytest.raises(ConfigurationError, match="NUL"):
        publisher.put("q", 1, dedup_key="a\x00b")
    with pytest.raises(ConfigurationError, match="NUL"):
        publisher.put("q", 1, headers={"a\x00": "b"})
    with pytest.raises(ConfigurationError, match="limited to 63 bytes"):
        PostgresBroker(chaos.dsn, schema="s" * 64)
    with pytest.raises(ConfigurationError, match="limited to 63 bytes"):
        PostgresBroker(chaos.dsn, table="é" * 32)  # 64 bytes
    with pytest.raises(ConfigurationError, match="NUL"):
        PostgresBroker(chaos.dsn, table="a\x00b")
    assert chaos.rows() == {}


@pytest.fixture
def cli_database(pg_dsn: str) -> Iterator[str]:
    """A database of its own: the command line works on public.taskmaster_jobs."""
    name = f"tm_chaos_cli_{secrets.token_hex(4)}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(pg_dsn, dbname=name)
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_command_line_arguments_are_never_sql(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--url", cli_database]
    assert main([*url, "migrate"]) == 0
    with psycopg.connect(cli_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(CANARY)))
        for name in HOSTILE:
            capsys.readouterr()
            assert main([*url, "put", name, '{"a": 1}', "--dedup-key", key(name)]) == 0
            job_id = int(capsys.readouterr().out)
            assert main([*url, "put", name, "{}", "--dedup-key", key(name)]) == 0
            assert "not put: an unfinished job with dedup key" in capsys.readouterr().out
            assert main([*url, "stats", "--json", name]) == 0
            (stats,) = msgspec.json.decode(capsys.readouterr().out)
            assert stats["queue"] == name and stats["ready"] == 1
            conn.execute(
                "UPDATE taskmaster_jobs SET state = 'failed', last_error = %s WHERE id = %s",
                [name, job_id],
            )
            assert main([*url, "failed", "--json", "--queue", name]) == 0
            (failed,) = msgspec.json.decode(capsys.readouterr().out)
            assert (failed["id"], failed["queue"], failed["last_error"]) == (job_id, name, name)
            assert main([*url, "requeue", "--queue", name]) == 0
            assert capsys.readouterr().out == "requeued 1 job(s)\n"
            assert main([*url, "prune", "--older-than", "0", "--queue", name]) == 0
            assert capsys.readouterr().out == "pruned 0 job(s)\n"
            assert main([*url, "delete", "--queue", name]) == 0
            assert capsys.readouterr().out == "deleted 1 job(s)\n"
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", [CANARY]).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM taskmaster_jobs").fetchone() == (0,)


# -- payload size -------------------------------------------------------------


def test_payloads_over_the_limit_are_refused_before_anything_is_stored(chaos: ChaosDB) -> None:
    small = Publisher(chaos.broker, max_payload_size=1000)
    with pytest.raises(PayloadTooLargeError) as caught:
        small.put("q", "x" * 1000)  # 1002 bytes of JSON
    assert str(caught.value) == (
        "payload for queue 'q' is 1002 bytes, over the limit of 1000 bytes"
    )
    with pytest.raises(PayloadTooLargeError):
        small.put_many("q", ["fine", "x" * 5000, "fine"])  # all or nothing
    default = Publisher(chaos.broker)
    with pytest.raises(PayloadTooLargeError, match=f"over the limit of {DEFAULT_MAX_PAYLOAD_SIZE}"):
        default.put("q", b"\x00" * DEFAULT_MAX_PAYLOAD_SIZE, serializer="msgpack")
    assert chaos.rows() == {}


def test_a_10_mb_payload_round_trips_intact(chaos: ChaosDB) -> None:
    text = "".join(chr(0x20 + i % 0x5F) for i in range(10_000_000))  # 10 MB of JSON text
    blob = bytes(range(256)) * 39_000  # ~10 MB of binary (msgpack)
    publisher = Publisher(chaos.broker)
    text_id = publisher.put("big", text)
    blob_id = publisher.put("big", blob, serializer="msgpack")
    claimed = {c.id: c for c in chaos.broker.claim(["big"], 2, 60)}
    assert msgspec.json.decode(claimed[text_id].payload) == text  # type: ignore[index]
    assert msgspec.msgpack.decode(claimed[blob_id].payload) == blob  # type: ignore[index]
    (stored,) = chaos.execute(
        sql.SQL("SELECT octet_length(payload) FROM {} WHERE id = %s").format(
            chaos.broker.names.qualified
        ),
        [text_id],
    )
    assert stored == (len(msgspec.json.encode(text)),)


# -- connection strings, databases, passwords -----------------------------------

MALFORMED = [
    "postgresql://u:s3cret@[::1/db",
    "postgresql://u:s3cret@localhost/db?no_such_option=1",
    "host=localhost password=s3cret dbname='unterminated",
    # options libpq would refuse on every attempt (not retried as "unreachable")
    "postgresql://u:s3cret@localhost:notaport/db",
    "postgresql://u:s3cret@localhost/db?sslmode=sometimes",
]
"""Refused before any connection is tried."""

UNUSABLE = [
    ("postgresql://u:s3cret@localhost:1/db", "Connection refused"),
]
"""Well formed, but nothing answers there: retried until connect_timeout."""


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_one_clear_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_broker(url)
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)
    assert main(["--url", url, "stats"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taskmaster: error: ") and err.count("\n") == 1, err
    assert "s3cret" not in err and "Traceback" not in err


@pytest.mark.parametrize(("url", "reason"), UNUSABLE)
def test_an_unusable_url_is_one_clear_error_on_open(url: str, reason: str) -> None:
    broker = open_broker(url, connect_timeout=1)
    with pytest.raises(BrokerError) as caught:
        broker.open()
    message = str(caught.value)
    assert message.startswith("could not connect to PostgreSQL at u@localhost")
    assert reason in message and "s3cret" not in message and "\n" not in message


def test_a_missing_database_is_one_clear_error(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = make_conninfo(pg_dsn, dbname="no_such_database")
    with pytest.raises(BrokerError, match='database "no_such_database" does not exist'):
        PostgresBroker(dsn, connect_timeout=1).open()
    assert main(["--url", dsn, "stats"]) == 1
    err = capsys.readouterr().err
    assert 'database "no_such_database" does not exist' in err and err.count("\n") == 1, err


@pytest.fixture(scope="module")
def password_server() -> Iterator[tuple[str, str]]:
    """The shared server trusts local connections, so a wrong password cannot
    be tried there: a server of our own requires one of role ``pw_user``.
    Yields (DSN without password, the right password)."""
    password = secrets.token_hex(8)
    with own_server() as server:
        uri = str(server.get_uri())
        with psycopg.connect(uri, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE pw_user LOGIN PASSWORD {}").format(sql.Literal(password))
            )
            hba = Path(server.pgdata) / "pg_hba.conf"
            hba.write_text("local all pw_user scram-sha-256\n" + hba.read_text())
            admin.execute("SELECT pg_reload_conf()")
        yield make_conninfo(uri, user="pw_user"), password


def test_a_wrong_password_is_one_clear_error(
    password_server: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, password = password_server
    wrong = make_conninfo(dsn, password="not-the-password")  # noqa: S106 - deliberately wrong
    with pytest.raises(BrokerError) as caught:
        PostgresBroker(wrong, connect_timeout=1).open()
    message = str(caught.value)
    assert 'password authentication failed for user "pw_user"' in message
    assert "not-the-password" not in message
    assert main(["--url", wrong, "stats"]) == 1
    err = capsys.readouterr().err
    assert 'password authentication failed for user "pw_user"' in err
    assert err.count("\n") == 1 and "not-the-password" not in err
    # The right one works (the error above was about the password, nothing else).
    with PostgresBroker(make_conninfo(dsn, password=password), schema=unique_schema()) as ok:
        assert ok.schema_version() == 0
