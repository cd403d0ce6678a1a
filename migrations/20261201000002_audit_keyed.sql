-- The audit chain becomes keyed (invariant 6): events from now on are chained with
-- HMAC-SHA256 under `audit.key` (configuration only, never in the database). Events
-- already written keep their unkeyed SHA-256 hashes and stay verifiable: `keyed_from` is
-- the first sequence number chained with the key, and verification checks the events
-- before it with the old rule. A fresh database is keyed from its first event.
ALTER TABLE audit_head ADD COLUMN keyed_from BIGINT NOT NULL DEFAULT 1;
UPDATE audit_head SET keyed_from = seq + 1 WHERE audit_head_id = 1;

-- Audit verification is a maintenance job, one at a time like the other two.
DROP INDEX job_singleton_idx;
CREATE UNIQUE INDEX job_singleton_idx ON job (kind) WHERE kind IN ('sync_catalog', 'reconcile', 'verify_audit');

-- Its runs are recorded beside theirs: the CHECK on `kind` goes (as it went for `job` in
-- 20261201000001; SQLite cannot drop a CHECK, so the table is rebuilt).
CREATE TABLE maintenance_run_copy AS SELECT * FROM maintenance_run;

DROP TABLE maintenance_run;

CREATE TABLE maintenance_run (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                   -- a JobKind (server/src/store/jobs.rs)
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    progress TEXT NOT NULL,
    summary TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);

INSERT INTO maintenance_run (run_id, kind, status, progress, summary, started_at, finished_at)
SELECT run_id, kind, status, progress, summary, started_at, finished_at FROM maintenance_run_copy;

DROP TABLE maintenance_run_copy;

CREATE INDEX maintenance_run_kind_idx ON maintenance_run (kind, started_at);
