"""Every statement of ``chancy-lite export`` and ``import``, for both sides, named. No logic lives here.

``{p}`` is the table prefix. The Postgres statements (``PG_*``) target the tables Chancy 0.25/0.26 migrate
(psycopg ``%(name)s`` placeholders; JSON goes in as text and is cast to JSONB, times as ``timestamptz``). The
SQLite statements (``LITE_*``) read and write chancy_lite's own tables (times are INTEGER microseconds, JSON text).

Every write is ``ON CONFLICT DO NOTHING``: rerunning a transfer, or resuming one that stopped half way, writes
only the rows that are not there yet and never changes a row that is. Nothing here writes a version table.
"""

from __future__ import annotations

# ------------------------------------------------------------------ Postgres

# Which schema the target has: one row per migration key ("chancy", "cron", "workflow", ...), written by
# Chancy's own migrate(). A database without this table was not migrated by Chancy.
PG_SCHEMA_VERSIONS = "SELECT version_of, version FROM {p}schema_version"
PG_TABLE_EXISTS = "SELECT to_regclass(%(name)s) IS NOT NULL"

PG_INSERT_QUEUE = """
INSERT INTO {p}queues (name, state, concurrency, tags, executor, executor_options, polling_interval,
                       rate_limit, rate_limit_window, resume_at, eager_polling, created_at)
VALUES (%(name)s, %(state)s, %(concurrency)s, %(tags)s, %(executor)s, %(executor_options)s::jsonb,
        %(polling_interval)s, %(rate_limit)s, %(rate_limit_window)s, %(resume_at)s, %(eager_polling)s,
        %(created_at)s)
ON CONFLICT (name) DO NOTHING
"""

# A job as it was: id, times, attempts, errors, meta and unique key kept. Conflicts on the id (already
# exported) or on an active unique key (Chancy already holds an active job with that key) insert nothing; the
# verification counts afterwards tell the two apart.
PG_INSERT_JOB = """
INSERT INTO {p}jobs (id, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts,
                     created_at, started_at, completed_at, scheduled_at, unique_key, errors)
VALUES (%(id)s::uuid, %(queue)s, %(func)s, %(kwargs)s::jsonb, %(limits)s::jsonb, %(meta)s::jsonb, %(state)s,
        %(priority)s, %(attempts)s, %(max_attempts)s, %(created_at)s, %(started_at)s, %(completed_at)s,
        %(scheduled_at)s, %(unique_key)s, %(errors)s::jsonb)
ON CONFLICT DO NOTHING
"""
# Which of these ids (a uuid[]) are in the target.
PG_PRESENT_JOB_IDS = "SELECT id::text FROM {p}jobs WHERE id = ANY(%(ids)s::uuid[])"
# Active jobs already holding one of these unique keys, under another id (they would make an insert a no-op).
PG_HELD_UNIQUE_KEYS = """
SELECT unique_key, id::text FROM {p}jobs
WHERE unique_key = ANY(%(keys)s) AND state NOT IN ('succeeded', 'failed')
"""

# Cron: 0.26 has the timezone column (cron v3); 0.25 (cron v2) does not.
PG_INSERT_CRON_026 = """
INSERT INTO {p}cron (unique_key, job, cron, timezone, last_run, next_run)
VALUES (%(unique_key)s, %(job)s::jsonb, %(cron)s, %(timezone)s, %(last_run)s, %(next_run)s)
ON CONFLICT (unique_key) DO NOTHING
"""
PG_INSERT_CRON_025 = """
INSERT INTO {p}cron (unique_key, job, cron, last_run, next_run)
VALUES (%(unique_key)s, %(job)s::jsonb, %(cron)s, %(last_run)s, %(next_run)s)
ON CONFLICT (unique_key) DO NOTHING
"""
PG_COUNT_CRON = "SELECT count(*) FROM {p}cron WHERE unique_key = ANY(%(keys)s)"

PG_INSERT_WORKFLOW = """
INSERT INTO {p}workflows (id, name, state, created_at, updated_at)
VALUES (%(id)s::uuid, %(name)s, %(state)s, %(created_at)s, %(updated_at)s)
ON CONFLICT (id) DO NOTHING
"""
PG_INSERT_WORKFLOW_STEP = """
INSERT INTO {p}workflow_steps (workflow_id, step_id, job_data, dependencies, job_id, created_at, updated_at)
VALUES (%(workflow_id)s::uuid, %(step_id)s, %(job_data)s::jsonb, %(dependencies)s::jsonb, %(job_id)s::uuid,
        %(created_at)s, %(updated_at)s)
ON CONFLICT (workflow_id, step_id) DO NOTHING
"""
PG_COUNT_WORKFLOWS = "SELECT count(*) FROM {p}workflows WHERE id = ANY(%(ids)s::uuid[])"

# Wake Chancy's workers: the event a push sends (on the channel "{p}events"), delivered when the batch commits.
PG_NOTIFY = "SELECT pg_notify(%(channel)s, %(payload)s)"

# --- import (Postgres -> file)
PG_QUEUES = """
SELECT name, state, concurrency, tags, executor, executor_options::text, polling_interval, rate_limit,
       rate_limit_window, resume_at, eager_polling, created_at
FROM {p}queues ORDER BY name
"""
# A page of jobs in the given states after an id, in id order (keyset pagination). :since bounds finished jobs.
PG_JOBS_PAGE = """
SELECT id::text, queue, func, kwargs::text, limits::text, meta::text, state, priority, attempts, max_attempts,
       created_at, started_at, completed_at, scheduled_at, unique_key, errors::text
FROM {p}jobs
WHERE state = ANY(%(states)s) AND id > %(after)s::uuid
    AND (state NOT IN ('succeeded', 'failed') OR completed_at >= %(since)s)
ORDER BY id
LIMIT %(limit)s
"""
PG_JOBS_BY_ID = """
SELECT id::text, queue, func, kwargs::text, limits::text, meta::text, state, priority, attempts, max_attempts,
       created_at, started_at, completed_at, scheduled_at, unique_key, errors::text
FROM {p}jobs WHERE id = ANY(%(ids)s::uuid[])
"""
PG_CRON = "SELECT unique_key, job::text, cron, {timezone}, last_run, next_run FROM {p}cron ORDER BY unique_key"
PG_ACTIVE_WORKFLOWS = """
SELECT id::text, name, state, created_at, updated_at FROM {p}workflows
WHERE state IN ('pending', 'running') ORDER BY id
"""
PG_WORKFLOW_STEPS = """
SELECT workflow_id::text, step_id, job_data::text, dependencies::text, job_id::text, created_at, updated_at
FROM {p}workflow_steps WHERE workflow_id = ANY(%(ids)s::uuid[]) ORDER BY workflow_id, step_id
"""
# Workers whose heartbeat has not expired (a running Chancy worker would keep taking jobs during an import).
PG_LIVE_WORKERS = "SELECT worker_id FROM {p}workers WHERE expires_at >= NOW() ORDER BY worker_id"

# -------------------------------------------------------------------- SQLite

LITE_TABLE_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

_LITE_JOB_COLUMNS = (
    "id, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts,"
    " created_at, started_at, completed_at, scheduled_at, unique_key, errors"
)
# A page of jobs in the states of the JSON array :states after :after, in id order (the id's unique index
# serves the order; each page is its own read). Finished jobs only from :since on.
LITE_JOBS_PAGE = (
    "SELECT " + _LITE_JOB_COLUMNS + """ FROM {p}jobs
WHERE id > :after AND state IN (SELECT value FROM json_each(:states))
    AND (state NOT IN ('succeeded', 'failed') OR completed_at >= :since)
ORDER BY id
LIMIT :limit
"""
)
LITE_JOBS_BY_ID = "SELECT " + _LITE_JOB_COLUMNS + " FROM {p}jobs WHERE id IN (SELECT value FROM json_each(?))"
# How many jobs a transfer would take, per (queue, state).
LITE_COUNT_JOBS = """
SELECT queue, state, count(*) FROM {p}jobs
WHERE state IN (SELECT value FROM json_each(:states))
    AND (state NOT IN ('succeeded', 'failed') OR completed_at >= :since)
GROUP BY queue, state
"""
LITE_RUNNING_JOBS = """
SELECT id, queue, func, taken_by, holder_pid FROM {p}jobs WHERE state = 'running' ORDER BY id
"""
# Waiting jobs with per-key limits (Job.with_concurrency / with_rate_limit), which Chancy has no counterpart for.
LITE_KEYED_JOBS = """
SELECT limit_key, count(*) FROM {p}jobs
WHERE state IN ('pending', 'retrying') AND limit_key IS NOT NULL GROUP BY limit_key ORDER BY limit_key
"""
LITE_LIVE_WORKERS = """
SELECT worker_id, hostname, pid, expires_at FROM {p}workers WHERE expires_at >= :now ORDER BY worker_id
"""
LITE_QUEUES = """
SELECT name, state, concurrency, tags, executor, executor_options, polling_interval, rate_limit,
       rate_limit_window, resume_at, eager_polling, created_at
FROM {p}queues ORDER BY name
"""
LITE_CRON = "SELECT unique_key, job, cron, timezone, last_run, next_run FROM {p}cron ORDER BY unique_key"
LITE_ACTIVE_WORKFLOWS = """
SELECT id, name, state, created_at, updated_at FROM {p}workflows WHERE state IN ('pending', 'running') ORDER BY id
"""
LITE_WORKFLOW_STEPS = """
SELECT workflow_id, step_id, job_data, dependencies, job_id, created_at, updated_at FROM {p}workflow_steps
WHERE workflow_id IN (SELECT value FROM json_each(?)) ORDER BY workflow_id, step_id
"""

# --- import (Postgres -> file): the same rows, written as they were.
LITE_INSERT_QUEUE = """
INSERT INTO {p}queues (name, state, concurrency, tags, executor, executor_options, polling_interval, rate_limit,
                       rate_limit_window, resume_at, eager_polling, created_at, updated_at)
VALUES (:name, :state, :concurrency, :tags, :executor, :executor_options, :polling_interval, :rate_limit,
        :rate_limit_window, :resume_at, :eager_polling, :created_at, :created_at)
ON CONFLICT (name) DO NOTHING
"""
LITE_INSERT_JOB = """
INSERT INTO {p}jobs (id, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts,
                     created_at, started_at, completed_at, scheduled_at, unique_key, errors)
VALUES (:id, :queue, :func, :kwargs, :limits, :meta, :state, :priority, :attempts, :max_attempts,
        :created_at, :started_at, :completed_at, :scheduled_at, :unique_key, :errors)
ON CONFLICT DO NOTHING
"""
LITE_PRESENT_JOB_IDS = "SELECT id FROM {p}jobs WHERE id IN (SELECT value FROM json_each(?))"
LITE_INSERT_CRON = """
INSERT INTO {p}cron (unique_key, job, cron, timezone, last_run, next_run)
VALUES (:unique_key, :job, :cron, :timezone, :last_run, :next_run)
ON CONFLICT (unique_key) DO NOTHING
"""
LITE_INSERT_WORKFLOW = """
INSERT INTO {p}workflows (id, name, state, created_at, updated_at)
VALUES (:id, :name, :state, :created_at, :updated_at)
ON CONFLICT (id) DO NOTHING
"""
LITE_INSERT_WORKFLOW_STEP = """
INSERT INTO {p}workflow_steps (workflow_id, step_id, job_data, dependencies, job_id, created_at, updated_at)
VALUES (:workflow_id, :step_id, :job_data, :dependencies, :job_id, :created_at, :updated_at)
ON CONFLICT (workflow_id, step_id) DO NOTHING
"""
