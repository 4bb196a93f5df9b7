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
]

# Version 2: finished jobs are counted as they finish, so that count_jobs() never reads them all (waiting and
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
    " created_at, started_at, completed_at, scheduled_at, unique_key, errors"
)

# push: a new pending job. A duplicate active unique_key inserts nothing.
INSERT_JOB = """
INSERT INTO {p}jobs
    (id, queue, func, kwargs, limits, meta, priority, max_attempts, created_at, scheduled_at, unique_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'retrying') DO NOTHING
"""
# push handed over (see chancy_lite.wake): a new job inserted already running, held by an idle child (as its claim
# would leave it; started_at stays NULL until the job starts), which gets the job in a datagram.
INSERT_HANDED_JOB = """
INSERT INTO {p}jobs
    (id, queue, func, kwargs, limits, meta, priority, max_attempts, created_at, scheduled_at, unique_key,
     state, taken_by, holder_pid, holder_start)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)
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

# claim (one job): pending/retrying + due + attempts left -> running, held by (worker, pid).
CLAIM_JOB = (
    """
UPDATE {p}jobs
SET state = 'running', started_at = :now, taken_by = :worker_id, holder_pid = :pid, holder_start = :pid_start
WHERE rowid = (
    SELECT rowid FROM {p}jobs INDEXED BY {p}jobs_claim
    WHERE queue = :queue AND state IN ('pending', 'retrying') AND scheduled_at <= :now AND attempts < max_attempts
    ORDER BY priority DESC, id
    LIMIT 1
)
RETURNING """
    + _JOB_COLUMNS
)
# claim (a batch of up to :n jobs), same transition, but started_at stays NULL: the child runs the batch's jobs
# one after another, and a job shows that it started only once it did (MARK_JOB_STARTED or its outcome).
CLAIM_JOBS = (
    """
UPDATE {p}jobs
SET state = 'running', started_at = NULL, taken_by = :worker_id, holder_pid = :pid, holder_start = :pid_start
WHERE rowid IN (
    SELECT rowid FROM {p}jobs INDEXED BY {p}jobs_claim
    WHERE queue = :queue AND state IN ('pending', 'retrying') AND scheduled_at <= :now AND attempts < max_attempts
    ORDER BY priority DESC, id
    LIMIT :n
)
RETURNING """
    + _JOB_COLUMNS
)
# When the earliest waiting job of a queue becomes due (NULL if none waits).
NEXT_DUE = """
SELECT min(scheduled_at) FROM {p}jobs INDEXED BY {p}jobs_due
WHERE queue = ? AND state IN ('pending', 'retrying')
"""

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
RETURNING state, taken_by, holder_pid, queue
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
SELECT id FROM {p}jobs INDEXED BY {p}jobs_claim WHERE state IN ('pending', 'retrying') AND ({{rule}}) ORDER BY id
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
    "FROM {p}jobs\nWHERE ", "FROM {p}jobs INDEXED BY {p}jobs_claim\nWHERE state IN ('pending', 'retrying') AND ", 1
)
LIST_RUNNING_JOBS = LIST_JOBS.replace(
    "FROM {p}jobs\nWHERE ", "FROM {p}jobs INDEXED BY {p}jobs_running\nWHERE state = 'running' AND ", 1
)
# Jobs per queue and state: waiting and running ones from their partial indexes, finished ones from their counts
# (see version 2 above). One statement, so one snapshot.
COUNT_JOBS = """
SELECT queue, state, count(*) FROM {p}jobs INDEXED BY {p}jobs_claim WHERE state IN ('pending', 'retrying')
GROUP BY queue, state
UNION ALL
SELECT queue, 'running', count(*) FROM {p}jobs INDEXED BY {p}jobs_running WHERE state = 'running' GROUP BY queue
UNION ALL
SELECT queue, state, n FROM {p}job_counts WHERE n > 0
"""
# The same counted the long way, from every row (for tests that check the counts).
COUNT_JOBS_SCAN = "SELECT queue, state, count(*) FROM {p}jobs GROUP BY queue, state"

# For `chancy-lite watch`: each answered from an index alone, never the whole table.
COUNT_WAITING = "SELECT count(*) FROM {p}jobs INDEXED BY {p}jobs_claim WHERE state IN ('pending', 'retrying')"
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
