"""Every SQL statement of the WorkflowPlugin, named, with the transition it makes. No logic lives here.

``{p}`` is the table prefix. Ids are UUID text (lowercase, hyphenated: text order is time order for the default
time-ordered ids); times are INTEGER microseconds since the epoch (UTC), as in the core tables; ``job_data`` is a
packed Job (``Job.pack()``) and ``dependencies`` a list of step ids, both JSON text.
"""

from __future__ import annotations

# Steps of the "workflow" migration key: (up, down) for each version.
MIGRATIONS: list[tuple[list[str], list[str]]] = [
    (
        [
            # Chancy 0.26's columns (its v1-v3 in one step).
            """
            CREATE TABLE {p}workflows (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'completed', 'failed')),
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            ) WITHOUT ROWID
            """,
            "CREATE INDEX {p}workflows_state_idx ON {p}workflows (state)",
            # 0.26's v3: the recovery poll walks active workflows in id order without reading finished ones.
            "CREATE INDEX {p}workflows_active_id_idx ON {p}workflows (id) WHERE state IN ('pending', 'running')",
            # Chancy's columns, plus ``state``: the finished state of the step's job, recorded in the transaction
            # that wrote it, so a step keeps its outcome once the Pruner deletes the job. ``job_id`` references no
            # table on purpose: jobs are pruned and purged on their own.
            """
            CREATE TABLE {p}workflow_steps (
                id INTEGER PRIMARY KEY,
                workflow_id TEXT NOT NULL REFERENCES {p}workflows (id) ON DELETE CASCADE,
                step_id TEXT NOT NULL,
                job_data TEXT NOT NULL CHECK (json_valid(job_data)),
                dependencies TEXT NOT NULL CHECK (json_valid(dependencies)),
                job_id TEXT,
                state TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )
            """,
            # Also serves the cascade and "the steps of a workflow" (Chancy's separate workflow_id index would
            # duplicate its first column).
            "CREATE UNIQUE INDEX {p}workflows_steps_unique_idx ON {p}workflow_steps (workflow_id, step_id)",
        ],
        ["DROP TABLE IF EXISTS {p}workflow_steps", "DROP TABLE IF EXISTS {p}workflows"],
    ),
]

# push: does the workflow exist already (then the push is an update)?
WORKFLOW_EXISTS = "SELECT 1 FROM {p}workflows WHERE id = ?"
# push: a new workflow, or an existing one's name and state replaced (created_at is kept).
UPSERT_WORKFLOW = """
INSERT INTO {p}workflows (id, name, state, created_at, updated_at)
VALUES (:id, :name, :state, :now, :now)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, state = excluded.state, updated_at = excluded.updated_at
RETURNING created_at, updated_at
"""
# push: a step, or an existing step's job, dependencies and job id replaced; its recorded outcome is kept only
# while it names the same job.
UPSERT_STEP = """
INSERT INTO {p}workflow_steps (workflow_id, step_id, job_data, dependencies, job_id, created_at, updated_at)
VALUES (:workflow_id, :step_id, :job_data, :dependencies, :job_id, :now, :now)
ON CONFLICT (workflow_id, step_id) DO UPDATE
SET job_data = excluded.job_data, dependencies = excluded.dependencies, job_id = excluded.job_id,
    state = CASE WHEN job_id IS excluded.job_id THEN state END, updated_at = excluded.updated_at
"""

# What the scheduling rule needs of some workflows (a JSON array of ids), one row per step (one row with NULL
# step columns for a workflow without steps), with each step's job as it is now. One statement: one snapshot.
STEP_VIEWS = """
SELECT w.id, w.name, w.state, s.step_id, s.dependencies, s.job_id, j.id IS NOT NULL, j.state, s.state, s.job_data
FROM {p}workflows w
LEFT JOIN {p}workflow_steps s ON s.workflow_id = w.id
LEFT JOIN {p}jobs j ON j.id = s.job_id
WHERE w.id IN (SELECT value FROM json_each(?))
ORDER BY w.id, s.step_id
"""
# advance: a step's job was pushed (or forgotten, with NULL: it vanished before it finished).
SET_STEP_JOB = """
UPDATE {p}workflow_steps SET job_id = :job_id, state = NULL, updated_at = :now
WHERE workflow_id = :workflow_id AND step_id = :step_id
"""
# advance: a step's job finished; its outcome is kept on the step.
RECORD_STEP_STATE = """
UPDATE {p}workflow_steps SET state = :state, updated_at = :now
WHERE workflow_id = :workflow_id AND step_id = :step_id
"""
# advance: the workflow's new state, guarded by the state it was planned from.
SET_WORKFLOW_STATE = """
UPDATE {p}workflows SET state = :state, updated_at = :now
WHERE id = :id AND state = :previous
"""

# fetch_workflows: the chosen workflows with their steps in step id order and each step's state (its job's, else
# the recorded one). One statement each: one consistent snapshot.
_FETCH_STEPS = """
SELECT c.id, c.name, c.state, c.created_at, c.updated_at,
       s.step_id, s.job_data, s.dependencies, s.job_id,
       CASE WHEN s.job_id IS NOT NULL THEN coalesce(j.state, s.state) END
FROM chosen c
LEFT JOIN {p}workflow_steps s ON s.workflow_id = c.id
LEFT JOIN {p}jobs j ON j.id = s.job_id
ORDER BY c.id, s.step_id
"""
# ... the oldest :limit, in these states (a JSON array, or NULL for all).
FETCH_WORKFLOWS = """
WITH chosen AS (
    SELECT id, name, state, created_at, updated_at FROM {p}workflows
    WHERE :states IS NULL OR state IN (SELECT value FROM json_each(:states))
    ORDER BY id
    LIMIT :limit
)""" + _FETCH_STEPS
# ... those with these ids (a JSON array; looked up by key), in these states (or NULL).
FETCH_WORKFLOWS_BY_ID = """
WITH chosen AS (
    SELECT id, name, state, created_at, updated_at FROM {p}workflows
    WHERE id IN (SELECT value FROM json_each(:ids))
      AND (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
    ORDER BY id
    LIMIT :limit
)""" + _FETCH_STEPS
# The dashboard: a keyset page of workflow ids, newest first, below :before (the primary key read backwards; in a
# state, the state index, which holds the id after the state).
PAGE_WORKFLOW_IDS = "SELECT id FROM {p}workflows WHERE id < :before ORDER BY id DESC LIMIT :limit"
PAGE_WORKFLOW_IDS_IN_STATE = """
SELECT id FROM {p}workflows INDEXED BY {p}workflows_state_idx
WHERE state = :state AND id < :before
ORDER BY id DESC
LIMIT :limit
"""
# wait_for_workflow: one workflow's state (NULL row: it does not exist).
WORKFLOW_STATE = "SELECT state FROM {p}workflows WHERE id = ?"

# The recovery poll: where a sweep ends (the newest active workflow when it starts). The partial index is named:
# without statistics SQLite prefers the state index, which would read every active workflow and sort them.
LAST_ACTIVE_ID = """
SELECT id FROM {p}workflows INDEXED BY {p}workflows_active_id_idx
WHERE state IN ('pending', 'running')
ORDER BY id DESC
LIMIT 1
"""
# The recovery poll: the next active workflows of the sweep, in id order (reading only as many as it returns).
ACTIVE_IDS = """
SELECT id FROM {p}workflows INDEXED BY {p}workflows_active_id_idx
WHERE state IN ('pending', 'running') AND id > :after AND id <= :until
ORDER BY id
LIMIT :limit
"""

# cleanup: up to :limit finished workflows matching the pruning rule go, their steps with them (ON DELETE CASCADE).
PRUNE_WORKFLOWS = """
DELETE FROM {p}workflows WHERE id IN (
    SELECT id FROM {p}workflows WHERE state IN ('completed', 'failed') AND ({{rule}}) LIMIT ?
)
"""
# Pruning rules: Age() is microseconds since the workflow was created; "older than" rules also want it finished
# (last updated) that long ago, as the Pruner's for jobs.
PRUNE_AGE = "(? - created_at)"
PRUNE_FINISHED_BEFORE = "updated_at < ?"
PRUNE_FINISHED_BY = "updated_at <= ?"
PRUNE_OPERATORS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
