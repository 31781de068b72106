-- Schema version 1 of the SQLite state store, as released; kept to test the migration.
CREATE TABLE IF NOT EXISTS runs(
    flow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    flow_yaml TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    resumed_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY(flow_id, run_id)
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs(started_at_ms);
CREATE INDEX IF NOT EXISTS runs_by_run_id ON runs(run_id);
CREATE TABLE IF NOT EXISTS job_runs(
    flow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms INTEGER,
    duration_ms INTEGER,
    skip_reason TEXT,
    outputs_json TEXT,
    error TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY(flow_id, run_id, job_id)
);
CREATE INDEX IF NOT EXISTS job_runs_by_seq ON job_runs(flow_id, run_id, seq);
CREATE TABLE IF NOT EXISTS step_runs(
    flow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step_type TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms INTEGER,
    duration_ms INTEGER,
    outputs_json TEXT,
    reason TEXT,
    error TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY(flow_id, run_id, job_id, step_id)
);
-- `seq` (execution order within a run) is MAX + 1: the index keeps that O(log n).
CREATE INDEX IF NOT EXISTS step_runs_by_seq ON step_runs(flow_id, run_id, seq);
CREATE TABLE IF NOT EXISTS locks(
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    fence INTEGER NOT NULL,
    acquired_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta(key, value) VALUES('lock_fence', 0);
PRAGMA user_version = 1;
