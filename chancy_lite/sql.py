"""Every SQL statement chancy_lite runs, named, with the transition it makes.

No logic lives here. ``{p}`` is the table prefix (``chancy_`` by default); the
store formats each statement once per prefix. Timestamps are INTEGER
microseconds since the Unix epoch (UTC), which round-trip exactly, down to
``datetime.min``. Lists and dicts are JSON text.

The claimable states appear as literals, never as bound parameters: SQLite
only uses a partial index when the query's WHERE literally implies the index's.
"""

from __future__ import annotations

# ----------------------------------------------------------------- migrations
# Each key ("chancy" for the core, one per plugin later) steps through numbered
# versions. A step is a list of statements run in one transaction.

CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS {p}migrations (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)
"""
MIGRATIONS_TABLE_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{p}migrations'"
GET_ALL_MIGRATION_VERSIONS = "SELECT key, version FROM {p}migrations"
SET_MIGRATION_VERSION = """
INSERT INTO {p}migrations (key, version) VALUES (:key, :version)
ON CONFLICT (key) DO UPDATE SET version = excluded.version
"""
DROP_MIGRATIONS = "DROP TABLE IF EXISTS {p}migrations"

CORE_MIGRATIONS: list[tuple[list[str], list[str]]] = [
    # (up, down) for version 1
    (
        [
            """
            CREATE TABLE {p}jobs (
                id TEXT NOT NULL UNIQUE,
                queue TEXT NOT NULL,
                func TEXT NOT NULL,
                kwargs TEXT NOT NULL DEFAULT '{{}}',
                limits TEXT NOT NULL DEFAULT '[]',
                meta TEXT NOT NULL DEFAULT '{{}}',
                state TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'retrying', 'succeeded', 'failed')),
                priority INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
                taken_by TEXT,
                holder_pid INTEGER,
                holder_start INTEGER,
                created_at INTEGER NOT NULL,
                started_at INTEGER,
                completed_at INTEGER,
                scheduled_at INTEGER NOT NULL,
                unique_key TEXT,
                errors TEXT NOT NULL DEFAULT '[]'
            )
            """,
            # Serves the claim: claimable rows of a queue in claim order, covering
            # every column the claim's subquery reads (state too, or SQLite reads the row).
            """
            CREATE INDEX {p}jobs_claim
            ON {p}jobs (queue, priority DESC, id, scheduled_at, attempts, max_attempts, state)
            WHERE state IN ('pending', 'retrying')
            """,
            # Serves "when is the next job of this queue due?" for sleeping workers.
            """
            CREATE INDEX {p}jobs_due ON {p}jobs (queue, scheduled_at, state)
            WHERE state IN ('pending', 'retrying')
            """,
            # At most one active job per unique key.
            """
            CREATE UNIQUE INDEX {p}jobs_unique ON {p}jobs (unique_key)
            WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'retrying')
            """,
            # Running jobs by holder, for recovery and cancellation.
            """
            CREATE INDEX {p}jobs_running ON {p}jobs (taken_by, holder_pid)
            WHERE state = 'running'
            """,
            # Finished jobs by age, for listing and pruning.
            """
            CREATE INDEX {p}jobs_finished ON {p}jobs (completed_at)
            WHERE state IN ('succeeded', 'failed')
            """,
            """
            CREATE TABLE {p}queues (
                name TEXT PRIMARY KEY,
                state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused')),
                concurrency INTEGER,
                tags TEXT NOT NULL DEFAULT '[".*"]',
                executor TEXT NOT NULL,
                executor_options TEXT NOT NULL DEFAULT '{{}}',
                polling_interval REAL NOT NULL DEFAULT 5,
                rate_limit INTEGER,
                rate_limit_window REAL,
                resume_at INTEGER,
                eager_polling INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE {p}workers (
                worker_id TEXT PRIMARY KEY,
                hostname TEXT NOT NULL,
                pid INTEGER NOT NULL,
                pid_start INTEGER,
                tags TEXT NOT NULL DEFAULT '[]',
                queues TEXT NOT NULL DEFAULT '[]',
                last_seen INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE {p}leader (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                worker_id TEXT NOT NULL,
                last_seen INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE {p}queue_rate_limits (
                queue TEXT PRIMARY KEY,
                window_start INTEGER NOT NULL,
                count INTEGER NOT NULL
            )
            """,
        ],
        [
            "DROP TABLE IF EXISTS {p}queue_rate_limits",
            "DROP TABLE IF EXISTS {p}leader",
            "DROP TABLE IF EXISTS {p}workers",
            "DROP TABLE IF EXISTS {p}queues",
            "DROP TABLE IF EXISTS {p}jobs",
        ],
    ),
    # (up, down) for version 2: per-key limits. A job may carry a limit key (a customer id, say) and its limits,
    # key_limits = JSON [concurrency_max, rate_limit, rate_limit_window in µs] (nulls for those it has not): a cap on
    # the running jobs of that key and/or a budget of claims per fixed window, shared by every job of the key. Two
    # columns, not four: every column costs each claim of every job, keyed or not. Waiting jobs are indexed apart,
    # unkeyed and keyed, so that a claim of unkeyed jobs never reads a keyed row.
    (
        [
            "ALTER TABLE {p}jobs ADD COLUMN limit_key TEXT",
            "ALTER TABLE {p}jobs ADD COLUMN key_limits TEXT",
            "DROP INDEX {p}jobs_claim",
            # Serves the claim of unkeyed jobs (as jobs_claim did for every job).
            """
            CREATE INDEX {p}jobs_claim_unkeyed
            ON {p}jobs (queue, priority DESC, id, scheduled_at, attempts, max_attempts, state, limit_key)
            WHERE state IN ('pending', 'retrying') AND limit_key IS NULL
            """,
            # Waiting keyed jobs of a queue in claim order, with their limits: the next ones a claim may take. (The
            # keyed indexes test limit_key first: the row of an unkeyed job, written at each change of its state,
            # fails the first test.)
            """
            CREATE INDEX {p}jobs_claim_keyed
            ON {p}jobs (queue, priority DESC, id, scheduled_at, attempts, max_attempts, state, limit_key, key_limits)
            WHERE limit_key IS NOT NULL AND state IN ('pending', 'retrying')
            """,
            # The same by key: a claim steps over a key whose jobs all wait on its limits in one seek.
            """
            CREATE INDEX {p}jobs_keyed_by_key
            ON {p}jobs (queue, limit_key, priority DESC, id, scheduled_at, attempts, max_attempts, state)
            WHERE limit_key IS NOT NULL AND state IN ('pending', 'retrying')
            """,
            # Running keyed jobs by key: what a key's concurrency cap counts.
            """
            CREATE INDEX {p}jobs_keyed_running ON {p}jobs (limit_key)
            WHERE limit_key IS NOT NULL AND state = 'running'
            """,
            # Each key's current rate-limit window and the claims counted in it.
            """
            CREATE TABLE {p}key_rate_limits (
                key TEXT PRIMARY KEY,
                window_start INTEGER NOT NULL,
                window_end INTEGER NOT NULL,
                count INTEGER NOT NULL
            )
            """,
            # Serves "when does the next key's window end?" (sleeping workers) and dropping windows that ended.
            "CREATE INDEX {p}key_rate_limits_end ON {p}key_rate_limits (window_end)",
        ],
        [
            "DROP TABLE IF EXISTS {p}key_rate_limits",
            "DROP INDEX IF EXISTS {p}jobs_keyed_running",
            "DROP INDEX IF EXISTS {p}jobs_keyed_by_key",
            "DROP INDEX IF EXISTS {p}jobs_claim_keyed",
            "DROP INDEX IF EXISTS {p}jobs_claim_unkeyed",
            """
            CREATE INDEX {p}jobs_claim
            ON {p}jobs (queue, priority DESC, id, scheduled_at, attempts, max_attempts, state)
            WHERE state IN ('pending', 'retrying')
            """,
            "ALTER TABLE {p}jobs DROP COLUMN key_limits",
            "ALTER TABLE {p}jobs DROP COLUMN limit_key",
        ],
    ),
    # (up, down) for version 3: finished jobs by state and queue, in id order, for the dashboard (chancy_lite.web): a
    # page of a queue's failed jobs, the next page after an id, a capped count and the queues holding finished jobs
    # are each a range of this index, however many jobs the file holds. Partial: a job enters it once, when it
    # finishes, so pushes and claims do not pay for it (a full index on (state, queue, id) cost ~15 % more CPU per
    # job in push + claim + complete, measured in-process).
    (
        [
            """
            CREATE INDEX {p}jobs_finished_by_queue ON {p}jobs (state, queue, id)
            WHERE state IN ('succeeded', 'failed')
            """,
        ],
        ["DROP INDEX IF EXISTS {p}jobs_finished_by_queue"],
    ),
]

# Version 4: finished jobs are counted as they finish, so that count_jobs() never reads them all (waiting and
# running jobs are counted from their partial indexes, a small set). Triggers keep the counts exact whatever
# writes the table: a job that finishes or is inserted finished counts, one that leaves (retried, deleted,
# pruned, purged) uncounts. Rows at 0 stay (count_jobs() skips them).
_FINISHED = "('succeeded', 'failed')"
# (An UPDATE, then an INSERT only when it found no row: cheaper than an upsert, ~1 µs per finished job.)
_COUNT_UP = (
    "UPDATE {p}job_counts SET n = n + 1 WHERE queue = NEW.queue AND state = NEW.state;"
    " INSERT INTO {p}job_counts (queue, state, n) SELECT NEW.queue, NEW.state, 1 WHERE changes() = 0;"
)
_COUNT_DOWN = "UPDATE {p}job_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;"
_MOVED = "NOT (OLD.state IS NEW.state AND OLD.queue IS NEW.queue)"
CORE_MIGRATIONS.append(
    (
        [
            """
            CREATE TABLE {p}job_counts (
                queue TEXT NOT NULL,
                state TEXT NOT NULL,
                n INTEGER NOT NULL,
                PRIMARY KEY (queue, state)
            ) WITHOUT ROWID
            """,
            f"INSERT INTO {{p}}job_counts (queue, state, n) SELECT queue, state, count(*) FROM {{p}}jobs"
            f" WHERE state IN {_FINISHED} GROUP BY queue, state",
            f"CREATE TRIGGER {{p}}jobs_count_insert AFTER INSERT ON {{p}}jobs"
            f" WHEN NEW.state IN {_FINISHED} BEGIN {_COUNT_UP} END",
            f"CREATE TRIGGER {{p}}jobs_count_leave AFTER UPDATE OF state, queue ON {{p}}jobs"
            f" WHEN OLD.state IN {_FINISHED} AND {_MOVED} BEGIN {_COUNT_DOWN} END",
            f"CREATE TRIGGER {{p}}jobs_count_enter AFTER UPDATE OF state, queue ON {{p}}jobs"
            f" WHEN NEW.state IN {_FINISHED} AND {_MOVED} BEGIN {_COUNT_UP} END",
            f"CREATE TRIGGER {{p}}jobs_count_delete AFTER DELETE ON {{p}}jobs"
            f" WHEN OLD.state IN {_FINISHED} BEGIN {_COUNT_DOWN} END",
        ],
        [
            "DROP TRIGGER IF EXISTS {p}jobs_count_delete",
            "DROP TRIGGER IF EXISTS {p}jobs_count_enter",
            "DROP TRIGGER IF EXISTS {p}jobs_count_leave",
            "DROP TRIGGER IF EXISTS {p}jobs_count_insert",
            "DROP TABLE IF EXISTS {p}job_counts",
        ],
    )
)

# ----------------------------------------------------------------------- jobs

_JOB_COLUMNS = (
    "id, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts, taken_by,"
    " created_at, started_at, completed_at, scheduled_at, unique_key, errors,"
    " limit_key, key_limits"
)

# push: a new pending job. A duplicate active unique_key inserts nothing.
INSERT_JOB = """
INSERT INTO {p}jobs
    (id, queue, func, kwargs, limits, meta, priority, max_attempts, created_at, scheduled_at, unique_key,
     limit_key, key_limits)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'retrying') DO NOTHING
"""
# push handed over (see chancy_lite.wake): a new job inserted already running, held by an idle child (as its claim
# would leave it; started_at stays NULL until the job starts), which gets the job in a datagram.
INSERT_HANDED_JOB = """
INSERT INTO {p}jobs
    (id, queue, func, kwargs, limits, meta, priority, max_attempts, created_at, scheduled_at, unique_key,
     limit_key, key_limits, state, taken_by, holder_pid, holder_start)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)
"""
# hand-over not delivered (the child left): running (held by that child, never started) -> pending.
RELEASE_HANDED_JOB = """
UPDATE {p}jobs SET state = 'pending', taken_by = NULL, holder_pid = NULL, holder_start = NULL
WHERE id = ? AND state = 'running' AND taken_by = ? AND holder_pid = ? AND attempts = 0 AND started_at IS NULL
"""
# push of a duplicate: the active job holding the key.
GET_ACTIVE_ID_BY_UNIQUE_KEY = """
SELECT id FROM {p}jobs
WHERE unique_key = ? AND state IN ('pending', 'running', 'retrying')
"""

GET_JOB = "SELECT " + _JOB_COLUMNS + " FROM {p}jobs WHERE id = ?"
GET_JOBS = "SELECT " + _JOB_COLUMNS + " FROM {p}jobs WHERE id IN (SELECT value FROM json_each(?))"

# The unkeyed jobs a claim may take: due, attempts left, in claim order.
_UNKEYED_DUE = """
    SELECT rowid FROM {p}jobs INDEXED BY {p}jobs_claim_unkeyed
    WHERE queue = :queue AND state IN ('pending', 'retrying') AND limit_key IS NULL
        AND scheduled_at <= :now AND attempts < max_attempts"""
# The LIMIT of a claim: none while due keyed jobs wait in :queue (the store then takes the path that weighs their
# keys' limits). A seek into an index of keyed jobs only, evaluated once before the scan: as a WHERE term, SQLite
# would test it on every row the scan reads, and read them all.
_UNLESS_KEYED_WAIT = """CASE WHEN EXISTS (
        SELECT 1 FROM {p}jobs INDEXED BY {p}jobs_claim_keyed
        WHERE queue = :queue AND state IN ('pending', 'retrying') AND limit_key IS NOT NULL AND scheduled_at <= :now
    ) THEN 0 ELSE """
# claim: pending/retrying + due + attempts left -> running, held by (worker, pid). One job: started now. A batch of
# up to :n: started_at stays NULL, as the child runs the batch's jobs one after another, and a job shows that it
# started only once it did (MARK_JOB_STARTED or its outcome).
_CLAIM_ONE = """
UPDATE {p}jobs
SET state = 'running', started_at = :now, taken_by = :worker_id, holder_pid = :pid, holder_start = :pid_start
WHERE rowid = ("""
_CLAIM_BATCH = """
UPDATE {p}jobs
SET state = 'running', started_at = NULL, taken_by = :worker_id, holder_pid = :pid, holder_start = :pid_start
WHERE rowid IN ("""
# The claims while no keyed job waits in the queue (the store checks what they return): unkeyed jobs only.
CLAIM_JOB = _CLAIM_ONE + _UNKEYED_DUE + """
    ORDER BY priority DESC, id
    LIMIT """ + _UNLESS_KEYED_WAIT + """1 END
)
RETURNING """ + _JOB_COLUMNS
CLAIM_JOBS = _CLAIM_BATCH + _UNKEYED_DUE + """
    ORDER BY priority DESC, id
    LIMIT """ + _UNLESS_KEYED_WAIT + """:n END
)
RETURNING """ + _JOB_COLUMNS
# The claims when keyed jobs wait: the best :n of the due unkeyed jobs and of the keyed jobs the store admitted
# (:keyed, their rowids as JSON), in claim order.
_MERGED = """
    SELECT r FROM (
        SELECT r, p, i FROM (
            SELECT rowid AS r, priority AS p, id AS i FROM {p}jobs INDEXED BY {p}jobs_claim_unkeyed
            WHERE queue = :queue AND state IN ('pending', 'retrying') AND limit_key IS NULL
                AND scheduled_at <= :now AND attempts < max_attempts
            ORDER BY priority DESC, id LIMIT :n
        )
        UNION ALL
        SELECT j.rowid, j.priority, j.id FROM json_each(:keyed) AS e JOIN {p}jobs AS j ON j.rowid = e.value
        WHERE j.state IN ('pending', 'retrying')
        ORDER BY p DESC, i
        LIMIT :n
    )
)
RETURNING """
CLAIM_JOB_WITH_KEYED = _CLAIM_ONE + _MERGED + _JOB_COLUMNS
CLAIM_JOBS_WITH_KEYED = _CLAIM_BATCH + _MERGED + _JOB_COLUMNS
# A keyed job's key as the store weighs it: its limits, its key's running jobs and its claims in the current window.
_KEYED_COLUMNS = """k.rowid, k.priority, k.id, k.limit_key, k.key_limits ->> 0 AS concurrency_max,
    k.key_limits ->> 1 AS rate_limit,
    (SELECT count(*) FROM {p}jobs AS r INDEXED BY {p}jobs_keyed_running
     WHERE r.limit_key = k.limit_key AND r.state = 'running' AND r.limit_key IS NOT NULL) AS running,
    CASE WHEN k.key_limits ->> 1 IS NULL THEN 0 ELSE coalesce((
        SELECT b.count FROM {p}key_rate_limits AS b
        WHERE b.key = k.limit_key AND b.window_start = :now - :now % (k.key_limits ->> 2)
    ), 0) END AS spent"""
# Keep the candidates whose key's limits allow one more as things stand (the store then counts the claim's own).
_ADMISSIBLE = """
SELECT * FROM weighed
WHERE (concurrency_max IS NULL OR running < concurrency_max) AND (rate_limit IS NULL OR spent < rate_limit)"""
# The keyed jobs a claim may take, first try: the due ones among the first :scan keyed jobs of :queue in claim order.
KEYED_CANDIDATES = (
    "WITH weighed AS MATERIALIZED (SELECT "
    + _KEYED_COLUMNS
    + """
    FROM (
        SELECT rowid, priority, id, limit_key, key_limits, scheduled_at, attempts, max_attempts
        FROM {p}jobs INDEXED BY {p}jobs_claim_keyed
        WHERE queue = :queue AND state IN ('pending', 'retrying') AND limit_key IS NOT NULL
        ORDER BY priority DESC, id
        LIMIT :scan
    ) AS k
    WHERE k.scheduled_at <= :now AND k.attempts < k.max_attempts
)"""
    + _ADMISSIBLE
)
# ...and when those were too few: the next due job of each key of :queue (one seek per key, however many of its
# jobs wait), best :n in claim order.
KEYED_HEADS = (
    """
WITH RECURSIVE keys (key) AS (
    SELECT (SELECT limit_key FROM {p}jobs INDEXED BY {p}jobs_keyed_by_key
            WHERE queue = :queue AND state IN ('pending', 'retrying') AND limit_key IS NOT NULL
            ORDER BY limit_key LIMIT 1)
    UNION ALL
    SELECT (SELECT limit_key FROM {p}jobs INDEXED BY {p}jobs_keyed_by_key
            WHERE queue = :queue AND state IN ('pending', 'retrying') AND limit_key IS NOT NULL
                AND limit_key > keys.key
            ORDER BY limit_key LIMIT 1)
    FROM keys WHERE keys.key IS NOT NULL
),
weighed AS MATERIALIZED (SELECT """
    + _KEYED_COLUMNS
    + """
    FROM keys JOIN {p}jobs AS k ON k.rowid = (
        SELECT rowid FROM {p}jobs INDEXED BY {p}jobs_keyed_by_key
        WHERE queue = :queue AND state IN ('pending', 'retrying') AND limit_key IS NOT NULL AND limit_key = keys.key
            AND scheduled_at <= :now AND attempts < max_attempts
        ORDER BY priority DESC, id LIMIT 1
    )
    WHERE keys.key IS NOT NULL
)"""
    + _ADMISSIBLE
    + """
ORDER BY priority DESC, id
LIMIT :n
"""
)
# When the earliest waiting job of a queue becomes due (NULL if none waits).
NEXT_DUE = """
SELECT min(scheduled_at) FROM {p}jobs INDEXED BY {p}jobs_due
WHERE queue = ? AND state IN ('pending', 'retrying')
"""
# The same among the jobs not due yet at ? (for a worker whose due jobs all wait on their keys' limits).
NEXT_DUE_AFTER = """
SELECT min(scheduled_at) FROM {p}jobs INDEXED BY {p}jobs_due
WHERE queue = ? AND state IN ('pending', 'retrying') AND scheduled_at > ?
"""
# spend: one more claim of a key in the window [:start, :end) (the first of a new window resets the count).
SPEND_KEY_BUDGET = """
INSERT INTO {p}key_rate_limits (key, window_start, window_end, count) VALUES (:key, :start, :end, 1)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN window_start = excluded.window_start THEN count + 1 ELSE 1 END,
    window_start = excluded.window_start,
    window_end = excluded.window_end
"""
# Forget a few keys' windows that ended before ? (they no longer limit anything).
DROP_ENDED_KEY_WINDOWS = """
DELETE FROM {p}key_rate_limits WHERE rowid IN (
    SELECT rowid FROM {p}key_rate_limits INDEXED BY {p}key_rate_limits_end WHERE window_end <= ? LIMIT 16
)
"""
# When the earliest key window still open at ? ends (NULL if none): when a rate-limited key may claim again.
NEXT_KEY_WINDOW_END = """
SELECT min(window_end) FROM {p}key_rate_limits INDEXED BY {p}key_rate_limits_end WHERE window_end > ?
"""
# A key's count in its current window, for inspection: (window_start, window_end, count) or no row.
GET_KEY_BUDGET = "SELECT window_start, window_end, count FROM {p}key_rate_limits WHERE key = ?"

# complete: running (held by us, this attempt) -> succeeded / retrying / failed.
# :error is NULL or one JSON error entry to append.
COMPLETE_JOB = """
UPDATE {p}jobs
SET state = :state,
    attempts = attempts + 1,
    started_at = coalesce(started_at, :started_at),  -- a start already on the row (claim, watcher) stays
    completed_at = :completed_at,
    scheduled_at = coalesce(:scheduled_at, scheduled_at),
    meta = coalesce(:meta, meta),
    errors = CASE WHEN :error IS NULL THEN errors ELSE json_insert(errors, '$[#]', json(:error)) END
WHERE id = :id AND state = 'running' AND taken_by = :worker_id AND holder_pid = :pid AND attempts = :attempts
"""

# complete, many at once: the same transition and guard as COMPLETE_JOB for each outcome of :outcomes (a JSON
# array of [id, attempts, state, completed_at, meta, error, scheduled_at, started_at]); returns the ids written.
# The unary + keeps the guard's columns from choosing the plan: each outcome finds its row by id.
COMPLETE_JOBS = """
UPDATE {p}jobs
SET state = o.state,
    attempts = {p}jobs.attempts + 1,
    started_at = coalesce({p}jobs.started_at, o.started_at),
    completed_at = o.completed_at,
    scheduled_at = coalesce(o.scheduled_at, {p}jobs.scheduled_at),
    meta = coalesce(o.meta, {p}jobs.meta),
    errors = CASE WHEN o.error IS NULL THEN {p}jobs.errors ELSE json_insert({p}jobs.errors, '$[#]', json(o.error)) END
FROM (
    SELECT value ->> 0 AS id, value ->> 1 AS attempts, value ->> 2 AS state, value ->> 3 AS completed_at,
           value ->> 4 AS meta, value ->> 5 AS error, value ->> 6 AS scheduled_at, value ->> 7 AS started_at
    FROM json_each(:outcomes)
) AS o
WHERE {p}jobs.id = o.id AND +{p}jobs.state = 'running' AND +{p}jobs.taken_by = :worker_id
    AND +{p}jobs.holder_pid = :pid AND {p}jobs.attempts = o.attempts
RETURNING {p}jobs.id
"""

# release: running (held by us, this attempt) -> waiting again, the attempt not counted
# (the worker was shut down under the job; it was not the job's fault).
RELEASE_JOB = """
UPDATE {p}jobs
SET state = CASE WHEN attempts > 0 THEN 'retrying' ELSE 'pending' END,
    started_at = NULL,
    meta = coalesce(:meta, meta)
WHERE id = :id AND state = 'running' AND taken_by = :worker_id AND holder_pid = :pid AND attempts = :attempts
"""

# start: a job claimed in a batch (held by us, this attempt, not yet marked) began running at :started_at.
MARK_JOB_STARTED = """
UPDATE {p}jobs SET started_at = :started_at
WHERE id = :id AND state = 'running' AND taken_by = :worker_id AND holder_pid = :pid AND attempts = :attempts
    AND started_at IS NULL
"""

# progress: save a running job's meta while it runs (held by us, this attempt).
SAVE_RUNNING_META = """
UPDATE {p}jobs SET meta = :meta
WHERE id = :id AND state = 'running' AND taken_by = :worker_id AND holder_pid = :pid AND attempts = :attempts
"""

# The running jobs one process holds.
HELD_JOBS = (
    "SELECT "
    + _JOB_COLUMNS
    + """ FROM {p}jobs INDEXED BY {p}jobs_running
WHERE state = 'running' AND taken_by = :worker_id AND holder_pid = :pid
"""
)
# Started jobs of one worker that have limits (for the supervisor's backstop on TIME limits); a job claimed in
# a batch but not started yet has no started_at and is never counted.
TIME_LIMITED_JOBS = """
SELECT id, holder_pid, started_at, limits FROM {p}jobs INDEXED BY {p}jobs_running
WHERE state = 'running' AND taken_by = ? AND limits != '[]' AND started_at IS NOT NULL
"""

# recover one job held by a dead process (at this attempt) -> :state (retrying / failed, decided by
# chancy_lite.outcome), counting the attempt and appending the :error entry.
RECOVER_JOB = """
UPDATE {p}jobs
SET state = :state,
    completed_at = :completed_at,
    errors = json_insert(errors, '$[#]', json(:error)),
    attempts = attempts + 1
WHERE id = :id AND state = 'running' AND taken_by = :worker_id AND holder_pid IS :pid AND attempts = :attempts
"""

# Every running job with its holder, to find the ones whose holder is gone.
LIST_HOLDERS = """
SELECT DISTINCT j.taken_by, j.holder_pid, j.holder_start, w.hostname, w.pid, w.pid_start, w.expires_at
FROM {p}jobs AS j LEFT JOIN {p}workers AS w ON w.worker_id = j.taken_by
WHERE j.state = 'running'
"""

# cancel: pending/retrying/running -> failed, with a "cancelled" error entry.
CANCEL_JOB = """
UPDATE {p}jobs
SET state = 'failed',
    completed_at = :now,
    attempts = CASE WHEN state = 'running' THEN attempts + 1 ELSE attempts END,
    errors = json_insert(errors, '$[#]', json_object('attempt', attempts, 'traceback', :reason))
WHERE id = :id AND state IN ('pending', 'retrying', 'running')
RETURNING state, taken_by, holder_pid, queue, key_limits ->> 0
"""
GET_JOB_HOLDER = "SELECT state, taken_by, holder_pid FROM {p}jobs WHERE id = ?"

# retry (Chancy 0.26): a finished job (succeeded or failed) -> retrying now with its full attempt budget again
# (attempts 0; errors kept). Not while another job holds its unique key.
RETRY_JOB = """
UPDATE {p}jobs
SET state = 'retrying',
    attempts = 0,
    scheduled_at = :now,
    started_at = NULL,
    completed_at = NULL,
    taken_by = NULL,
    holder_pid = NULL,
    holder_start = NULL
WHERE id = :id AND state IN ('succeeded', 'failed')
    AND (unique_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM {p}jobs AS other
        WHERE other.unique_key = {p}jobs.unique_key AND other.state IN ('pending', 'running', 'retrying')
    ))
RETURNING queue
"""
PURGE_JOB = "DELETE FROM {p}jobs WHERE id = ?"

# prune: delete up to ? finished jobs matching a rule ({{rule}} is compiled by the store from the pieces below).
PRUNE_JOBS = """
DELETE FROM {p}jobs WHERE rowid IN (
    SELECT rowid FROM {p}jobs WHERE state IN ('succeeded', 'failed') AND ({{rule}}) LIMIT ?
)
"""
# The columns a rule (chancy_lite.rule) can test, and how it tests text.
RULE_COLUMNS = {
    "queue": "queue", "state": "state", "func": "func", "id": "id", "priority": "priority", "attempts": "attempts",
    "created_at": "created_at", "scheduled_at": "scheduled_at",
}
RULE_LIKE = " LIKE ? ESCAPE '\\'"  # after the column; a backslash escapes % and _ in the value
PRUNE_AGE = "(? - created_at)"  # microseconds since the job was created
# Let "older than" rules use the finished-jobs index (for Age() > v and Age() >= v).
PRUNE_FINISHED_BEFORE = "completed_at < ?"
PRUNE_FINISHED_BY = "completed_at <= ?"
PRUNE_OPERATORS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

# reprioritize (Chancy 0.26: each job at most once a pass): the waiting jobs matching a rule, read once...
WAITING_JOB_IDS = """
SELECT id FROM {p}jobs INDEXED BY {p}jobs_due WHERE state IN ('pending', 'retrying') AND ({{rule}}) ORDER BY id
"""
# ...then their priority raised, a batch of ids (JSON) per transaction, those still waiting.
RAISE_PRIORITY = """
UPDATE {p}jobs SET priority = priority + ?
WHERE id IN (SELECT value FROM json_each(?)) AND state IN ('pending', 'retrying')
"""
# The ids of jobs matching a rule (for inspection and tests), in id order.
MATCHING_JOB_IDS = "SELECT id FROM {p}jobs WHERE ({{rule}}) ORDER BY id"

# list: newest first, optional filters (NULL = any).
LIST_JOBS = (
    "SELECT "
    + _JOB_COLUMNS
    + """ FROM {p}jobs
WHERE (:state IS NULL OR state = :state) AND (:queue IS NULL OR queue = :queue) AND (:func IS NULL OR func = :func)
ORDER BY id DESC
LIMIT :limit
"""
)
# The same for waiting and running jobs, through their partial indexes (a few rows among millions of finished).
LIST_WAITING_JOBS = LIST_JOBS.replace(
    "FROM {p}jobs\nWHERE ", "FROM {p}jobs INDEXED BY {p}jobs_due\nWHERE state IN ('pending', 'retrying') AND ", 1
)
LIST_RUNNING_JOBS = LIST_JOBS.replace(
    "FROM {p}jobs\nWHERE ", "FROM {p}jobs INDEXED BY {p}jobs_running\nWHERE state = 'running' AND ", 1
)
# Jobs per queue and state: waiting and running ones from their partial indexes, finished ones from their counts
# (see version 4 above). One statement, so one snapshot.
COUNT_JOBS = """
SELECT queue, state, count(*) FROM {p}jobs INDEXED BY {p}jobs_due WHERE state IN ('pending', 'retrying')
GROUP BY queue, state
UNION ALL
SELECT queue, 'running', count(*) FROM {p}jobs INDEXED BY {p}jobs_running WHERE state = 'running' GROUP BY queue
UNION ALL
SELECT queue, state, n FROM {p}job_counts WHERE n > 0
"""
# The same counted the long way, from every row (for tests that check the counts).
COUNT_JOBS_SCAN = "SELECT queue, state, count(*) FROM {p}jobs GROUP BY queue, state"

# For `chancy-lite watch`: each answered from an index alone, never the whole table.
COUNT_WAITING = "SELECT count(*) FROM {p}jobs INDEXED BY {p}jobs_due WHERE state IN ('pending', 'retrying')"
COUNT_RUNNING = "SELECT count(*) FROM {p}jobs INDEXED BY {p}jobs_running WHERE state = 'running'"
COUNT_FINISHED_SINCE = (
    "SELECT count(*) FROM {p}jobs INDEXED BY {p}jobs_finished"
    " WHERE state IN ('succeeded', 'failed') AND completed_at >= ?"
)
# The failed among the last :scan finished jobs, newest first.
RECENT_FAILURES = (
    "SELECT "
    + _JOB_COLUMNS
    + """ FROM {p}jobs WHERE rowid IN (
    SELECT rowid FROM {p}jobs INDEXED BY {p}jobs_finished WHERE state IN ('succeeded', 'failed')
    ORDER BY completed_at DESC LIMIT :scan
) AND state = 'failed'
ORDER BY completed_at DESC
LIMIT :limit
"""
)
JOB_STATES = "SELECT id, state FROM {p}jobs WHERE id IN (SELECT value FROM json_each(?))"

# ------------------------------------------------------------------ dashboard
# The pages of chancy_lite.web read a page of ids first, each through an index (below), then the rows of that page
# by id (GET_JOBS). Counts are capped: no page counts a million rows to show a number. {{where}} adds a page's other
# filters (the PAGE_* fragments, every value bound). Keyset paging: ids below :before, newest first; PAGE_AFTER_ALL
# is a :before above every id (ids are lower-case hex and dashes).

# The queues holding finished jobs in :state, one index seek per queue (a loose index scan, not a scan of the jobs).
QUEUES_WITH_FINISHED = """
WITH RECURSIVE q(name) AS (
    SELECT (SELECT queue FROM {p}jobs INDEXED BY {p}jobs_finished_by_queue
            WHERE state IN ('succeeded', 'failed') AND state = :state ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM {p}jobs INDEXED BY {p}jobs_finished_by_queue
            WHERE state IN ('succeeded', 'failed') AND state = :state AND queue > q.name ORDER BY queue LIMIT 1)
    FROM q WHERE q.name IS NOT NULL
)
SELECT name FROM q WHERE name IS NOT NULL
"""
# A page of the finished jobs of one state and queue: a range of jobs_finished_by_queue.
PAGE_FINISHED_IDS = """
SELECT id FROM {p}jobs INDEXED BY {p}jobs_finished_by_queue
WHERE state IN ('succeeded', 'failed') AND state = :state AND queue = :queue AND id < :before{{where}}
ORDER BY id DESC
LIMIT :limit
"""
# A page of running jobs: there are few (at most what the workers' children claimed), read through jobs_running.
PAGE_RUNNING_IDS = """
SELECT id FROM {p}jobs INDEXED BY {p}jobs_running
WHERE state = 'running' AND id < :before{{where}}
ORDER BY id DESC
LIMIT :limit
"""
# A page of waiting jobs when few wait (COUNT_WAITING_CAPPED below its cap): all of them through jobs_due, sorted.
PAGE_FEW_WAITING_IDS = """
SELECT id FROM {p}jobs INDEXED BY {p}jobs_due
WHERE state IN ('pending', 'retrying') AND state = :state AND id < :before{{where}}
ORDER BY id DESC
LIMIT :limit
"""
# ...and when many wait (a backlog): newest first along the ids, where a backlog's jobs are (claims take the oldest
# first), reading at most :scan rows. A page it does not fill is read again through jobs_due (the statement above).
PAGE_MANY_WAITING_IDS = """
SELECT id FROM (
    SELECT id, state, queue, func, priority, attempts FROM {p}jobs WHERE id < :before ORDER BY id DESC LIMIT :scan
)
WHERE state = :state{{where}}
ORDER BY id DESC
LIMIT :limit
"""
PAGE_AFTER_ALL = "~"
PAGE_QUEUE = " AND queue = :queue"  # for the running and waiting pages (the finished page has it already)
PAGE_FUNC_EQUALS = " AND func = :func"
PAGE_FUNC_CONTAINS = " AND func LIKE :func_like ESCAPE '\\'"  # a backslash escapes % and _ in the value
# Numeric columns a page may compare (" AND column op :name"), and the operators it may use.
PAGE_COLUMNS = {"priority": "priority", "attempts": "attempts"}
PAGE_OPERATORS = {"=": "=", ">": ">", "<": "<", ">=": ">=", "<=": "<="}
# Capped counts, each read from an index: finished jobs of a state (of a queue), running jobs, waiting jobs.
COUNT_FINISHED_CAPPED = """
SELECT count(*) FROM (
    SELECT 1 FROM {p}jobs INDEXED BY {p}jobs_finished_by_queue
    WHERE state IN ('succeeded', 'failed') AND state = :state LIMIT :cap
)
"""
COUNT_FINISHED_IN_QUEUE_CAPPED = """
SELECT count(*) FROM (
    SELECT 1 FROM {p}jobs INDEXED BY {p}jobs_finished_by_queue
    WHERE state IN ('succeeded', 'failed') AND state = :state AND queue = :queue LIMIT :cap
)
"""
# Running jobs by queue and state ('running'), all of them (few).
COUNT_RUNNING_BY_QUEUE = """
SELECT queue, count(*) FROM {p}jobs INDEXED BY {p}jobs_running WHERE state = 'running' GROUP BY queue
"""
# Waiting jobs by state, among the first :cap index entries (of every queue, or of one): exact while fewer than :cap
# wait, else a floor.
COUNT_WAITING_CAPPED = """
SELECT state, count(*) FROM (
    SELECT state FROM {p}jobs INDEXED BY {p}jobs_due WHERE state IN ('pending', 'retrying') LIMIT :cap
) GROUP BY state
"""
COUNT_WAITING_IN_QUEUE_CAPPED = """
SELECT state, count(*) FROM (
    SELECT state FROM {p}jobs INDEXED BY {p}jobs_due
    WHERE state IN ('pending', 'retrying') AND queue = :queue LIMIT :cap
) GROUP BY state
"""
# Jobs finished since :since (µs), counted from jobs_finished up to :cap: the throughput of the last minutes.
COUNT_FINISHED_SINCE_CAPPED = """
SELECT count(*) FROM (
    SELECT 1 FROM {p}jobs INDEXED BY {p}jobs_finished
    WHERE state IN ('succeeded', 'failed') AND completed_at >= :since LIMIT :cap
)
"""
# Every distinct function name (a full scan: the API caches it, as Chancy 0.26 does).
DISTINCT_FUNCS = "SELECT DISTINCT func FROM {p}jobs ORDER BY func"
# Changes once another connection commits (a poll of a few microseconds: the live view's change detector).
DATA_VERSION = "PRAGMA data_version"
SQLITE_VERSION = "SELECT sqlite_version()"

# --------------------------------------------------------------------- queues

_QUEUE_COLUMNS = (
    "name, state, concurrency, tags, executor, executor_options, polling_interval,"
    " rate_limit, rate_limit_window, resume_at, eager_polling"
)
# declare: insert a queue, or leave the stored one as it is.
INSERT_QUEUE = (
    "INSERT INTO {p}queues (" + _QUEUE_COLUMNS + ", created_at, updated_at)"
    " VALUES (:name, :state, :concurrency, :tags, :executor, :executor_options, :polling_interval,"
    " :rate_limit, :rate_limit_window, :resume_at, :eager_polling, :now, :now)"
    " ON CONFLICT (name) DO NOTHING"
)
# declare(upsert=True): insert or overwrite the configuration.
UPSERT_QUEUE = (
    "INSERT INTO {p}queues (" + _QUEUE_COLUMNS + ", created_at, updated_at)"
    " VALUES (:name, :state, :concurrency, :tags, :executor, :executor_options, :polling_interval,"
    " :rate_limit, :rate_limit_window, :resume_at, :eager_polling, :now, :now)"
    " ON CONFLICT (name) DO UPDATE SET state = excluded.state, concurrency = excluded.concurrency,"
    " tags = excluded.tags, executor = excluded.executor, executor_options = excluded.executor_options,"
    " polling_interval = excluded.polling_interval, rate_limit = excluded.rate_limit,"
    " rate_limit_window = excluded.rate_limit_window, resume_at = excluded.resume_at,"
    " eager_polling = excluded.eager_polling, updated_at = excluded.updated_at"
)
GET_QUEUE = "SELECT " + _QUEUE_COLUMNS + " FROM {p}queues WHERE name = ?"
GET_ALL_QUEUES = "SELECT " + _QUEUE_COLUMNS + " FROM {p}queues ORDER BY name"
# pause: active -> paused (optionally until :resume_at).
PAUSE_QUEUE = "UPDATE {p}queues SET state = 'paused', resume_at = :resume_at, updated_at = :now WHERE name = :name"
# resume: paused -> active.
RESUME_QUEUE = "UPDATE {p}queues SET state = 'active', resume_at = NULL, updated_at = :now WHERE name = :name"
# resume every paused queue whose resume_at has passed.
RESUME_DUE_QUEUES = """
UPDATE {p}queues SET state = 'active', resume_at = NULL, updated_at = :now
WHERE state = 'paused' AND resume_at IS NOT NULL AND resume_at <= :now
RETURNING name
"""
DELETE_QUEUE = "DELETE FROM {p}queues WHERE name = ?"
DELETE_QUEUE_JOBS = "DELETE FROM {p}jobs WHERE queue = ?"
# A queue's rate-limit window: reset when it has passed, else count one more claim.
GET_RATE_BUDGET = "SELECT window_start, count FROM {p}queue_rate_limits WHERE queue = ?"
SPEND_RATE_BUDGET = """
INSERT INTO {p}queue_rate_limits (queue, window_start, count) VALUES (?, ?, ?)
ON CONFLICT (queue) DO UPDATE SET window_start = excluded.window_start, count = excluded.count
"""

# -------------------------------------------------------------------- workers

# heartbeat: insert or refresh this worker's row.
UPSERT_WORKER = """
INSERT INTO {p}workers (worker_id, hostname, pid, pid_start, tags, queues, last_seen, expires_at, created_at)
VALUES (:worker_id, :hostname, :pid, :pid_start, :tags, :queues, :now, :expires_at, :now)
ON CONFLICT (worker_id) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid,
    pid_start = excluded.pid_start, tags = excluded.tags, queues = excluded.queues,
    last_seen = excluded.last_seen, expires_at = excluded.expires_at
"""
DELETE_WORKER = "DELETE FROM {p}workers WHERE worker_id = ?"
# Workers whose heartbeat has expired leave the table.
DELETE_EXPIRED_WORKERS = "DELETE FROM {p}workers WHERE expires_at < :now RETURNING worker_id"
GET_ALL_WORKERS = """
SELECT w.worker_id, w.hostname, w.pid, w.tags, w.queues, w.last_seen, w.expires_at,
       (l.worker_id IS NOT NULL AND l.expires_at >= :now) AS is_leader
FROM {p}workers AS w LEFT JOIN {p}leader AS l ON l.worker_id = w.worker_id
WHERE w.expires_at >= :now
ORDER BY w.worker_id
"""

# ----------------------------------------------------------------- leadership

# elect: drop an expired lease, then take the lease if nobody holds it or renew it if we do. The renewal only
# touches our own row (WHERE): a worker that still believes it leads cannot extend another's lease (the
# split-brain Chancy 0.26 fixed).
EXPIRE_LEADER = "DELETE FROM {p}leader WHERE expires_at < :now"
CLAIM_LEADER = """
INSERT INTO {p}leader (id, worker_id, last_seen, expires_at) VALUES (1, :worker_id, :now, :expires_at)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, expires_at = excluded.expires_at
WHERE {p}leader.worker_id = excluded.worker_id
"""
GET_LEADER = "SELECT worker_id, expires_at FROM {p}leader WHERE id = 1"
# step down: only our own lease.
RELEASE_LEADER = "DELETE FROM {p}leader WHERE worker_id = :worker_id"

# ----------------------------------------------------------------- inspection

# Copy committed WAL frames into the database without blocking readers or writers.
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
# The same, then wait (busy handler) for readers to leave the WAL, holding off new writers, and truncate it:
# under a steady stream of writes a passive checkpoint never sees the WAL idle, so the WAL would only grow.
CHECKPOINT_TRUNCATE = "PRAGMA wal_checkpoint(TRUNCATE)"

EXPLAIN = "EXPLAIN QUERY PLAN "
