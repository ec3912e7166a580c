"""The broker's SQL: named statements, composed once per broker instance.

Table, sequence and index names are composed with :class:`psycopg.sql.Identifier`
(always quoted); every value a caller supplies travels as a parameter. The
only literals composed in are names derived by the broker itself (the NOTIFY
channel and the token sequence's regclass). Each statement is rendered to
bytes once in :class:`Statements`, so psycopg's prepared-statement cache sees
the same query every time and nothing is re-composed per call.

Batches use ``unnest()`` over array parameters: one statement, one round trip,
whatever the batch size. What the reading statements return (and how a row
becomes a core type) is in ``_rows``.
"""

from __future__ import annotations

from psycopg import sql

from ._names import TableNames, for_parameters
from ._rows import CLAIM_COLUMNS, JOB_COLUMNS, STATS_COLUMNS

__all__ = ["Statements"]

_PUT = """
WITH input AS MATERIALIZED (
    SELECT nextval({id_seq}::regclass) AS id, i.*
    FROM unnest(
        %(queues)s::text[], %(payloads)b::bytea[], %(serializers)s::text[],
        %(priorities)s::int4[], %(delays)s::float8[], %(run_ats)s::float8[],
        %(max_attempts)s::int4[], %(dedup_keys)s::text[], %(headers)s::text[]
    ) WITH ORDINALITY AS i(queue, payload, serializer, priority, delay, run_at,
                           max_attempts, dedup_key, headers, ord)
),
inserted AS (
    INSERT INTO {t} AS j (id, queue, payload, serializer, state, priority, attempts,
                          max_attempts, run_at, dedup_key, headers, created_at, updated_at)
    SELECT i.id, i.queue, i.payload, i.serializer, 'queued', i.priority, 0, i.max_attempts,
           coalesce(to_timestamp(i.run_at), now() + i.delay * interval '1 second'),
           i.dedup_key, i.headers::jsonb, now(), now()
    FROM (
        SELECT input.*, row_number() OVER (
            PARTITION BY input.queue, input.dedup_key ORDER BY input.ord) AS nth
        FROM input
    ) AS i
    WHERE i.dedup_key IS NULL OR i.nth = 1  -- the first of a key within the batch
    ORDER BY i.ord
    ON CONFLICT (queue, dedup_key)
        WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running')
        DO NOTHING
    RETURNING j.id
)
SELECT inserted.id FROM input LEFT JOIN inserted ON inserted.id = input.id ORDER BY input.ord
"""

# One job, no arrays: the common put from application code.
_PUT_ONE = """
INSERT INTO {t} AS j (queue, payload, serializer, state, priority, attempts, max_attempts,
                      run_at, dedup_key, headers, created_at, updated_at)
VALUES (%(queue)s::text, %(payload)b::bytea, %(serializer)s::text, 'queued', %(priority)s::int4,
        0, %(max_attempts)s::int4,
        coalesce(to_timestamp(%(run_at)s::float8), now() + %(delay)s::float8 * interval '1 second'),
        %(dedup_key)s::text, %(headers)s::jsonb, now(), now())
ON CONFLICT (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running')
    DO NOTHING
RETURNING j.id
"""

# Large batches without dedup keys travel by binary COPY into a session-local
# staging table (COPY costs the client a fraction of what adapting nine arrays
# does), then one INSERT ... SELECT moves them. The identity default is
# evaluated after the ORDER BY (Postgres computes volatile expressions above
# a sort), so ids ascend in input order: the caller sorts the returned ids.
RECLAIM_BATCH = 1000
"""Expired leases one reclaim statement takes at most."""

PUT_STAGE = "taskmaster_put_stage"
STAGE_COLUMNS = (
    "ord",
    "queue",
    "payload",
    "serializer",
    "priority",
    "delay",
    "run_at",
    "max_attempts",
    "headers",
)
STAGE_TYPES = ("int4", "text", "bytea", "text", "int4", "float8", "float8", "int4", "text")
_PUT_STAGE_CREATE = """
CREATE TEMP TABLE IF NOT EXISTS {stage} (
    ord int4, queue text, payload bytea, serializer text, priority int4, delay float8,
    run_at float8, max_attempts int4, headers text
) ON COMMIT DELETE ROWS
"""
_PUT_STAGE_COPY = "COPY {stage} ({stage_columns}) FROM STDIN (FORMAT BINARY)"
# The staged rows are deleted by the statement that moves them: a caller's
# transaction may put by COPY several times before it commits, and ON COMMIT
# DELETE ROWS alone would hand the second put the first one's rows too.
_PUT_FROM_STAGE = """
WITH staged AS (DELETE FROM {stage} RETURNING *)
INSERT INTO {t} AS j (queue, payload, serializer, state, priority, attempts, max_attempts,
                      run_at, headers, created_at, updated_at)
SELECT s.queue, s.payload, s.serializer, 'queued', s.priority, 0, s.max_attempts,
       coalesce(to_timestamp(s.run_at), now() + s.delay * interval '1 second'),
       s.headers::jsonb, now(), now()
FROM staged AS s
ORDER BY s.ord
RETURNING j.id
"""

# JIT off for the rest of the put's transaction, returning the setting it had;
# on the caller's connection the old value is put back after the put.
_JIT_OFF = """
SELECT s.old, set_config('jit', 'off', true)
FROM (SELECT current_setting('jit') AS old OFFSET 0) AS s
"""
_JIT_RESTORE = "SELECT set_config('jit', %s, true)"

# Reclaim expired leases of the requested queues. Run as its own statement just
# before the claim (same pipeline, one round trip): a later statement takes a new
# snapshot, so the jobs put back to 'queued' here are claimable by the claim.
_RECLAIM = """
WITH expired AS (
    SELECT id FROM {t}
    WHERE state = 'running' AND lease_until <= now() AND queue = ANY(%(queues)s::text[])
    ORDER BY lease_until
    LIMIT {reclaim_batch}
    FOR UPDATE SKIP LOCKED
),
reclaimed AS (
    UPDATE {t} AS j SET
        state = CASE WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
        last_error = 'worker lost: lease expired during attempt ' || j.attempts
                     || CASE WHEN j.attempts < j.max_attempts THEN ''
                             ELSE ' of ' || j.max_attempts END,
        lease_until = NULL, claim_token = NULL, updated_at = now()
    FROM expired WHERE j.id = expired.id
    RETURNING j.queue, j.state
),
woken AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM reclaimed WHERE state = 'queued') AS q
)
SELECT (SELECT count(*) FROM reclaimed), (SELECT count(*) FROM woken), {relax}
"""

# The best `limit` ready jobs of each queue (an ordered scan of the claim index
# per queue, locking with SKIP LOCKED), then the best `limit` of those. A plain
# `queue = ANY(...)` would read every ready job of those queues and sort them.
# Rows locked but not chosen stay locked only until this statement's
# (autocommit) transaction ends. `queues` must hold no duplicates.
_CLAIM = """
WITH ready AS (
    SELECT c.id
    FROM (
        SELECT u.name FROM unnest(%(queues)s::text[]) AS u(name)
        WHERE NOT EXISTS (
            SELECT 1 FROM {queues_t} AS p WHERE p.queue = u.name AND p.paused_at IS NOT NULL
        )
    ) AS q
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM {t}
        WHERE state = 'queued' AND queue = q.name AND run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s
),
claimed AS (
    UPDATE {t} AS j SET
        state = 'running', attempts = j.attempts + 1,
        lease_until = now() + %(lease)s * interval '1 second',
        claim_token = nextval({token_seq}::regclass), updated_at = now()
    FROM ready WHERE j.id = ready.id
    RETURNING {returning}
)
SELECT claimed.* FROM claimed CROSS JOIN (SELECT {relax}) AS relax
ORDER BY claimed.priority DESC, claimed.run_at, claimed.id
"""

# Reclaim, claim, settle, extend and release end with {relax}: with
# async_commit, `set_config('synchronous_commit', 'off', true)` for their own
# transaction. Losing one of them to a server crash can only make a job run
# again (at-least-once), never lose it; puts stay synchronous.
#
# Settle, extend and release are fenced on the claim token alone: a token is
# unique to one claim and cleared whenever a job leaves 'running', so a match
# means "still running under this claim". Adding `state = 'running'` would
# let the planner drive the join from the partial lease index, whose row
# estimate (taken when few jobs ran) turns a 1,500-row settle into a
# quadratic nested loop. `j.id = ANY(ids)` makes the primary key the obvious
# way in whatever the statistics say (a hash join over a sequential scan of
# the whole table was the planner's other bad idea).
_SETTLE = """
WITH s AS (
    SELECT * FROM unnest(%(ids)b::int8[], %(tokens)b::int8[], %(kinds)b::text[],
                         %(errors)b::text[], %(delays)b::float8[])
        WITH ORDINALITY AS s(id, token, kind, error, delay, ord)
),
deleted AS (
    DELETE FROM {t} AS j USING s
    WHERE {ack_deletes} AND s.kind = 'ack'
      AND j.id = ANY(%(ids)b::int8[]) AND j.id = s.id AND j.claim_token = s.token
    RETURNING j.id
),
updated AS (
    UPDATE {t} AS j SET
        state = CASE s.kind WHEN 'retry' THEN 'queued' WHEN 'fail' THEN 'failed' ELSE 'done' END,
        run_at = CASE WHEN s.kind = 'retry'
                      THEN now() + greatest(s.delay, 0) * interval '1 second' ELSE j.run_at END,
        last_error = CASE WHEN s.kind = 'ack' THEN j.last_error ELSE s.error END,
        lease_until = NULL, claim_token = NULL, updated_at = now()
    FROM s
    WHERE (s.kind <> 'ack' OR NOT {ack_deletes})
      AND j.id = ANY(%(ids)b::int8[]) AND j.id = s.id AND j.claim_token = s.token
    RETURNING j.id, j.queue, s.kind, s.delay
),
woken AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM updated WHERE kind = 'retry' AND delay <= 0) AS q
)
SELECT
    array(SELECT s.id FROM s
          WHERE s.id NOT IN (SELECT id FROM deleted UNION ALL SELECT id FROM updated)
          ORDER BY s.ord),
    (SELECT count(*) FROM woken),
    {relax}
"""

_EXTEND = """
WITH l AS (
    SELECT * FROM unnest(%(ids)b::int8[], %(tokens)b::int8[]) WITH ORDINALITY AS l(id, token, ord)
),
extended AS (
    UPDATE {t} AS j SET lease_until = now() + %(lease)s * interval '1 second', updated_at = now()
    FROM l WHERE j.id = ANY(%(ids)b::int8[]) AND j.id = l.id AND j.claim_token = l.token
    RETURNING j.id
)
SELECT array(SELECT l.id FROM l WHERE l.id NOT IN (SELECT id FROM extended) ORDER BY l.ord),
       {relax}
"""

_RELEASE = """
WITH l AS (
    SELECT * FROM unnest(%(ids)b::int8[], %(tokens)b::int8[]) AS l(id, token)
),
released AS (
    UPDATE {t} AS j SET
        state = 'queued', attempts = greatest(j.attempts - 1, 0), run_at = least(j.run_at, now()),
        lease_until = NULL, claim_token = NULL, updated_at = now()
    FROM l WHERE j.id = ANY(%(ids)b::int8[]) AND j.id = l.id AND j.claim_token = l.token
    RETURNING j.queue
),
woken AS (
    SELECT pg_notify({channel}, q.queue) FROM (SELECT DISTINCT queue FROM released) AS q
)
SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM woken), {relax}
"""

# A failed job whose dedup key is held by an unfinished job stays failed (requeueing
# it would break the key's uniqueness); of several failed jobs sharing a key, the
# oldest is requeued.
_REQUEUE = """
WITH matching AS (
    SELECT f.id, f.dedup_key,
           row_number() OVER (PARTITION BY f.queue, f.dedup_key ORDER BY f.id) AS rank
    FROM {t} AS f
    WHERE f.state = 'failed'
      AND (%(ids)s::int8[] IS NULL OR f.id = ANY(%(ids)s::int8[]))
      AND (%(queue)s::text IS NULL OR f.queue = %(queue)s::text)
      AND (f.dedup_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM {t} AS u
          WHERE u.queue = f.queue AND u.dedup_key = f.dedup_key
            AND u.state IN ('queued', 'running')))
),
requeued AS (
    UPDATE {t} AS j SET
        state = 'queued', attempts = 0, run_at = now(),
        lease_until = NULL, claim_token = NULL, updated_at = now()
    FROM matching AS m
    WHERE j.id = m.id AND (m.dedup_key IS NULL OR m.rank = 1) AND j.state = 'failed'
    RETURNING j.queue
),
woken AS (
    SELECT pg_notify({channel}, q.queue) FROM (SELECT DISTINCT queue FROM requeued) AS q
)
SELECT (SELECT count(*) FROM requeued), (SELECT count(*) FROM woken)
"""

_DELETE_WHERE = """
    (%(ids)s::int8[] IS NULL OR id = ANY(%(ids)s::int8[]))
    AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
"""

_PRUNE_WHERE = """
    state = ANY(%(states)s::text[]) AND state IN ('done', 'failed')
    AND updated_at <= now() - %(older_than)s * interval '1 second'
    AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
"""

# One statement for all matching rows; with a limit, a batch of at most
# `limit` of them (found by whatever plan suits the filters) deleted by
# primary key, so a large delete can go in short transactions, one per call.
# `id = ANY(ARRAY(...))` keeps the primary key the way in: with `id IN
# (SELECT ...)` the planner hash-joined each batch against a sequential scan
# of the whole table (1,000,000 rows pruned in 100 batches: 12.5 s; now
# ~1.9 s, against 0.4-1.3 s for one statement). The filters are repeated on the DELETE itself:
# a row changed by another transaction after the subquery saw it (a failed
# job requeued meanwhile) is re-checked against them, and kept.
_UNLIMITED = "DELETE FROM {{t}} WHERE {where}"
_LIMITED = """
DELETE FROM {{t}}
WHERE id = ANY(ARRAY(SELECT id FROM {{t}} WHERE {where} LIMIT %(limit)s))
  AND {where}
"""

_STATS = """
SELECT {stats_columns}
FROM {t}
WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[])
GROUP BY queue
"""

_JOBS = """
SELECT {columns} FROM {t}
WHERE (%(ids)s::int8[] IS NULL OR id = ANY(%(ids)s::int8[]))
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
  AND (%(after_id)s::int8 IS NULL OR id > %(after_id)s::int8)
ORDER BY id
LIMIT %(limit)s
"""


# Pausing: one row per queue in the queues table; resuming clears paused_at
# and wakes the queue's consumers in the same statement.
_PAUSE = """
INSERT INTO {queues_t} (queue, paused_at)
SELECT name, now() FROM unnest(%(queues)s::text[]) AS u(name)
ON CONFLICT (queue) DO UPDATE SET paused_at = coalesce({queues_t}.paused_at, now())
"""
_RESUME = """
WITH resumed AS (
    UPDATE {queues_t} SET paused_at = NULL
    WHERE queue = ANY(%(queues)s::text[]) AND paused_at IS NOT NULL
    RETURNING queue
)
SELECT pg_notify({channel}, queue) FROM resumed
"""
_PAUSED = "SELECT queue FROM {queues_t} WHERE paused_at IS NOT NULL ORDER BY queue"


class Statements:
    """Every statement of one broker (one table, one keep-done mode), as bytes."""

    def __init__(self, names: TableNames, *, keep_done: bool, async_commit: bool) -> None:
        fields: dict[str, sql.Composable] = {
            "t": names.qualified,
            "queues_t": names.ident(names.queues_table),
            "channel": sql.Literal(names.channel),
            "id_seq": sql.Literal(names.ident(names.id_seq).as_string(None)),
            "token_seq": sql.Literal(names.ident(names.token_seq).as_string(None)),
            "returning": sql.SQL(CLAIM_COLUMNS),
            "columns": sql.SQL(JOB_COLUMNS),
            "stats_columns": sql.SQL(STATS_COLUMNS),
            "ack_deletes": sql.SQL("false" if keep_done else "true"),
            "stage": sql.Identifier("pg_temp", PUT_STAGE),
            "reclaim_batch": sql.Literal(RECLAIM_BATCH),
            # Evaluated in the statement, so it governs that statement's own
            # (autocommit) transaction: no extra statement, no round trip.
            "relax": sql.SQL(
                "set_config('synchronous_commit', 'off', true)" if async_commit else "NULL"
            ),
            "stage_columns": sql.SQL(", ").join(map(sql.Identifier, STAGE_COLUMNS)),
        }

        # Statements run with parameters need any "%" in the user's schema and
        # table names doubled; the staging statements run without parameters.
        with_parameters = {
            **fields,
            **{
                key: for_parameters(fields[key]) for key in ("t", "queues_t", "id_seq", "token_seq")
            },
        }

        def render(template: str, *, parameters: bool = True) -> bytes:
            chosen = with_parameters if parameters else fields
            return sql.SQL(template).format(**chosen).as_bytes(None)

        self.put = render(_PUT)
        self.put_one = render(_PUT_ONE)
        self.put_stage_create = render(_PUT_STAGE_CREATE, parameters=False)
        self.put_stage_copy = render(_PUT_STAGE_COPY, parameters=False)
        self.put_from_stage = render(_PUT_FROM_STAGE, parameters=False)
        self.jit_off = render(_JIT_OFF, parameters=False)
        self.jit_restore = _JIT_RESTORE.encode()
        self.reclaim = render(_RECLAIM)
        self.claim = render(_CLAIM)
        self.settle = render(_SETTLE)
        self.extend = render(_EXTEND)
        self.release = render(_RELEASE)
        self.requeue = render(_REQUEUE)
        self.delete = render(_UNLIMITED.format(where=_DELETE_WHERE))
        self.delete_limited = render(_LIMITED.format(where=_DELETE_WHERE))
        self.prune = render(_UNLIMITED.format(where=_PRUNE_WHERE))
        self.prune_limited = render(_LIMITED.format(where=_PRUNE_WHERE))
        self.stats = render(_STATS)
        self.pause = render(_PAUSE)
        self.resume = render(_RESUME)
        self.paused = render(_PAUSED, parameters=False)  # run without parameters
        self.jobs = render(_JOBS)
