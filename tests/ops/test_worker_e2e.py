"""``taskmaster worker`` on Postgres, end to end, as an operator runs it.

Real subprocesses: ``taskmaster migrate``, ``put``, ``stats``, ``failed``,
``requeue``, ``prune``, ``delete``, and ``taskmaster worker`` running the
component-style example app (examples/component_app), stopped with signals.
"""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from examples.component_app.app import WelcomeEmail
from taskmaster_core import JobInfo, JobState, Lease, Publisher
from taskmaster_postgres import PostgresBroker

from .helpers import APP, Worker, counts, ok, taskmaster, wait_for, worker

pytestmark = pytest.mark.postgres


def sent_emails(db: Path) -> list[tuple[int, str]]:
    """(job id, address) of every email the app recorded as sent."""
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT job_id, email FROM emails_sent ORDER BY rowid"))


def test_a_worker_runs_jobs_put_with_the_cli(
    cli_dsn: str, broker: PostgresBroker, tmp_path: Path
) -> None:
    assert ok(cli_dsn, "migrate").strip() == "schema is up to date"
    assert ok(cli_dsn, "migrate").strip() == "schema is up to date"  # idempotent

    ids = []
    for name in ["ada", "alan", "grace"]:
        payload = json.dumps({"email": f"{name}@example.com", "name": name.title()})
        ids.append(int(ok(cli_dsn, "put", "signups", payload)))
    payload_file = tmp_path / "signup.json"
    payload_file.write_text('{"email": "edsger@example.com", "name": "Edsger"}')
    ids.append(int(ok(cli_dsn, "put", "signups", f"@{payload_file}", "--priority", "5")))
    ids.append(int(ok(cli_dsn, "put", "signups", '{"email": "nobody", "name": "?"}')))
    dup = ok(cli_dsn, "put", "signups", '{"email": "x@y", "name": "X"}', "--dedup-key", "k")
    assert dup.strip().isdigit()
    again = ok(cli_dsn, "put", "signups", '{"email": "x@y", "name": "X"}', "--dedup-key", "k")
    assert again.strip() == "not put: an unfinished job with dedup key 'k' exists"
    later = ok(cli_dsn, "put", "signups", '{"email": "z@y", "name": "Z"}', "--delay", "1h")
    assert len(set(ids)) == 5

    (before,) = json.loads(ok(cli_dsn, "stats", "--json", "signups"))
    assert before["ready"] == 6 and before["scheduled"] == 1
    assert before["oldest_ready_age"] >= 0

    db = tmp_path / "app.db"
    with worker(cli_dsn, tmp_path / "worker.log", APP, env={"COMPONENT_APP_DB": str(db)}) as w:
        wait_for(
            lambda: (
                counts(broker, "signups")["ready"] == 0
                and counts(broker, "signups")["running"] == 0
                and broker.stats(["emails"])[0].unfinished == 0
                and len(sent_emails(db)) == 5
            )
        )
        assert w.stop() == 0

    rows = json.loads(ok(cli_dsn, "stats", "--json", "signups", "emails"))
    by_queue = {row["queue"]: row for row in rows}
    assert by_queue["signups"] == {
        "queue": "signups",
        "ready": 0,
        "scheduled": 1,  # the --delay 1h job
        "running": 0,
        "failed": 1,  # "nobody" is not an email address
        "done": 0,  # acked jobs are deleted
        "oldest_ready_age": None,
        "paused": False,
    }
    assert by_queue["emails"]["failed"] == by_queue["emails"]["running"] == 0
    assert sorted(email for _, email in sent_emails(db)) == [
        "ada@example.com",
        "alan@example.com",
        "edsger@example.com",
        "grace@example.com",
        "x@y",
    ]
    assert later.strip().isdigit()
    text = ok(cli_dsn, "stats")
    assert text.splitlines()[0].split() == [
        "queue",
        "ready",
        "scheduled",
        "running",
        "failed",
        "done",
        "oldest",
        "ready",
    ]


def test_sigterm_mid_run_exits_0_and_loses_no_job(
    cli_dsn: str, broker: PostgresBroker, tmp_path: Path
) -> None:
    ok(cli_dsn, "migrate")
    emails = [WelcomeEmail(email=f"user{i}@example.com", name=f"U{i}") for i in range(60)]
    ids = Publisher(broker).put_many("emails", emails)
    db = tmp_path / "app.db"
    env = {"COMPONENT_APP_DB": str(db), "COMPONENT_APP_MAIL_LATENCY": "0.25"}
    with worker(cli_dsn, tmp_path / "worker.log", APP, env=env) as w:
        # Mid-run: some sent, handlers busy, most still queued.
        wait_for(lambda: len(sent_emails(db)) >= 8 and counts(broker, "emails")["running"] > 0)
        w.signal(signal.SIGTERM)
        assert w.wait() == 0, w.output()
    log = w.output()
    assert "SIGTERM received: stopping" in log
    assert "worker stopped cleanly" in log

    sent = sent_emails(db)
    jobs = {info.id: info for info in broker.jobs(queue="emails", limit=1000)}
    assert not [i for i, info in jobs.items() if info.state == JobState.RUNNING]
    sent_ids = [job_id for job_id, _ in sent]
    assert len(sent_ids) == len(set(sent_ids)), "a job ran twice"
    assert set(sent_ids).isdisjoint(jobs), "a sent job is still in the table"
    assert set(sent_ids) | set(jobs) == set(ids), "a job was lost"
    assert 8 <= len(sent_ids) < len(ids)
    # Unstarted jobs went back as they were: queued, due, no attempt used.
    assert {(info.state, info.attempts) for info in jobs.values()} == {(JobState.QUEUED, 0)}


def test_a_second_signal_stops_at_once_and_still_returns_unstarted_jobs(
    cli_dsn: str, broker: PostgresBroker, pg_dsn: str, tmp_path: Path
) -> None:
    ok(cli_dsn, "migrate")
    emails = [WelcomeEmail(email=f"user{i}@example.com", name=f"U{i}") for i in range(30)]
    ids = Publisher(broker).put_many("emails", emails)
    db = tmp_path / "app.db"
    slow = {"COMPONENT_APP_DB": str(db), "COMPONENT_APP_MAIL_LATENCY": "60"}
    with worker(cli_dsn, tmp_path / "worker.log", APP, "--stop-timeout", "2m", env=slow) as w:
        wait_for(lambda: counts(broker, "emails")["running"] >= 8)  # 8 handlers busy
        w.signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM received: stopping" in w.output())
        hurried = time.monotonic()
        w.signal(signal.SIGINT)
        code = w.wait(timeout=10)
        took = time.monotonic() - hurried
    assert code == 3, w.output()  # handlers abandoned
    assert took < 5, f"the second signal took {took:.1f}s to stop the worker"
    assert "SIGINT received again: not waiting for running jobs" in w.output()

    jobs = {info.id: info for info in broker.jobs(queue="emails", limit=1000)}
    assert set(jobs) == set(ids), "a job was lost"
    running = [info for info in jobs.values() if info.state == JobState.RUNNING]
    queued = [info for info in jobs.values() if info.state == JobState.QUEUED]
    assert len(running) == 8  # the abandoned handlers' jobs: retried after their lease
    assert len(queued) == len(ids) - 8
    assert {info.attempts for info in queued} == {0}  # unstarted: returned, attempt undone
    assert sent_emails(db) == []

    # Their leases expire (made to, here) and a claim sweeps them back to the
    # queue; the next worker runs everything. (The sweep is done by hand: see
    # test_known_bugs.py for why the worker itself may never sweep them.)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE public.taskmaster_jobs SET lease_until = now() - interval '1 second'"
            " WHERE state = 'running'"
        )
    with PostgresBroker(cli_dsn, reclaim_interval=0) as sweeper:
        (one,) = sweeper.claim(["emails"], limit=1, lease=30)
        assert sweeper.release([Lease(one.id, one.token)]) == 1
    assert counts(broker, "emails")["ready"] == len(ids)
    fast = {"COMPONENT_APP_DB": str(db)}
    with worker(cli_dsn, tmp_path / "worker2.log", APP, env=fast) as w2:
        wait_for(lambda: broker.stats(["emails"])[0].unfinished == 0)
        assert w2.stop() == 0
    assert sorted(job_id for job_id, _ in sent_emails(db)) == sorted(i for i in ids if i)


def test_failed_requeue_prune_delete_round_trip(
    cli_dsn: str, broker: PostgresBroker, pg_dsn: str, tmp_path: Path
) -> None:
    ok(cli_dsn, "migrate")
    bad = [f'{{"email": "bad{i}", "name": "B{i}"}}' for i in range(4)]
    ids = [int(ok(cli_dsn, "put", "signups", payload)) for payload in bad]
    env = {"COMPONENT_APP_DB": str(tmp_path / "app.db")}

    def run_worker_until_all_failed(log: str) -> None:
        with worker(cli_dsn, tmp_path / log, APP, env=env) as w:
            wait_for(lambda: counts(broker, "signups")["failed"] == 4)
            assert w.stop() == 0

    run_worker_until_all_failed("worker1.log")
    failed = json.loads(ok(cli_dsn, "failed", "--json"))
    assert [row["id"] for row in failed] == ids
    assert {row["attempts"] for row in failed} == {1}
    assert failed[0]["last_error"] == "not an email address: 'bad0'"
    assert failed[0]["payload"] == {"email": "bad0", "name": "B0"}
    assert (
        base64.b64decode(failed[0]["payload_base64"])
        == json.dumps({"email": "bad0", "name": "B0"}, separators=(",", ":")).encode()
    )
    assert failed[0]["state"] == "failed" and failed[0]["serializer"] == "json"
    assert set(failed[0]) == {*JobInfo.__struct_fields__, "payload_base64"}  # every field
    table = ok(cli_dsn, "failed", "--queue", "signups", "--limit", "2").splitlines()
    assert table[0].split()[:3] == ["id", "queue", "attempts"]
    assert len(table) == 3 and table[1].split()[:3] == [str(ids[0]), "signups", "1/3"]

    assert ok(cli_dsn, "requeue", str(ids[0])).strip() == "requeued 1 job(s)"
    assert ok(cli_dsn, "requeue", str(ids[0])).strip() == "requeued 0 job(s)"  # not failed now
    assert ok(cli_dsn, "requeue", "--queue", "no-such-queue").strip() == "requeued 0 job(s)"
    assert ok(cli_dsn, "requeue", "--queue", "signups").strip() == "requeued 3 job(s)"
    assert ok(cli_dsn, "requeue", "--all").strip() == "requeued 0 job(s)"
    assert counts(broker, "signups") == {
        "ready": 4,
        "scheduled": 0,
        "running": 0,
        "failed": 0,
        "done": 0,
    }

    run_worker_until_all_failed("worker2.log")  # they fail again, attempts reset
    assert {row["attempts"] for row in json.loads(ok(cli_dsn, "failed", "--json"))} == {1}

    prune = ["prune", "--older-than", "1h", "--state", "failed"]
    assert ok(cli_dsn, *prune).strip() == "pruned 0 job(s)"  # all too recent
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE public.taskmaster_jobs SET updated_at = now() - interval '2 hours'"
            " WHERE id = ANY(%s)",
            [ids[:2]],
        )
    assert ok(cli_dsn, *prune, "--queue", "other").strip() == "pruned 0 job(s)"
    assert ok(cli_dsn, *prune).strip() == "pruned 2 job(s)"
    assert ok(cli_dsn, "prune", "--older-than", "0").strip() == "pruned 0 job(s)"  # done only

    assert ok(cli_dsn, "delete", str(ids[2])).strip() == "deleted 1 job(s)"
    assert ok(cli_dsn, "delete", str(ids[2])).strip() == "deleted 0 job(s)"
    queued_only = ["delete", "--queue", "signups", "--state", "queued"]
    assert ok(cli_dsn, *queued_only).strip() == "deleted 0 job(s)"
    assert ok(cli_dsn, "delete", "--queue", "signups", "--state", "failed").strip() == (
        "deleted 1 job(s)"
    )
    assert broker.jobs() == []
    assert taskmaster(cli_dsn, "failed").stdout.strip() == "no failed jobs"


def test_prune_and_delete_work_through_large_sets_in_batches(
    cli_dsn: str, broker: PostgresBroker, pg_dsn: str
) -> None:
    ok(cli_dsn, "migrate")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.taskmaster_jobs (queue, payload, serializer, state, updated_at)"
            " SELECT 'old', '\\x7b7d', 'json', 'done', now() - interval '2 days'"
            " FROM generate_series(1, 2500)"
        )
    Publisher(broker).put_many("busy", [{"n": i} for i in range(25)])
    batches = ["--batch-size", "1000"]  # 1,000 + 1,000 + 500
    assert ok(cli_dsn, "prune", "--older-than", "1d", *batches).strip() == "pruned 2500 job(s)"
    assert ok(cli_dsn, "prune", "--older-than", "1d", *batches).strip() == "pruned 0 job(s)"
    exact = ["--batch-size", "5"]  # 25 in batches of 5: stops at the 25 that matched
    assert ok(cli_dsn, "delete", "--queue", "busy", *exact).strip() == "deleted 25 job(s)"
    assert broker.jobs() == []
    bad = taskmaster(cli_dsn, "prune", "--older-than", "1d", "--batch-size", "0")
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr


def test_a_worker_whose_app_is_missing_exits_2(cli_dsn: str, tmp_path: Path) -> None:
    """A worker that cannot load its APP says so in one line."""
    w = Worker(cli_dsn, tmp_path / "w.log", "examples.component_app.app:nothing")
    try:
        assert w.wait(timeout=15) == 2
    finally:
        w.kill()
    assert "has no attribute 'nothing'" in w.output()
