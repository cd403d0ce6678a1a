-- The last rebuild of the job table for a new job kind: the CHECK on `kind` goes, so the
-- next kind needs no migration. `JobKind` in the store parses the column and refuses a kind
-- it does not know. SQLite cannot drop a CHECK constraint, so the table is rebuilt as in
-- 0002 and 0004, in SQL that PostgreSQL runs as well.

CREATE TABLE job_copy AS SELECT * FROM job;

DROP TABLE job;

CREATE TABLE job (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                   -- a JobKind (server/src/store/jobs.rs)
    subject_id TEXT NOT NULL,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    alerted BIGINT NOT NULL,              -- 0 or 1
    created_at BIGINT NOT NULL
);

INSERT INTO job (job_id, kind, subject_id, run_at, attempts, lease_owner, lease_until, last_error, alerted, created_at)
SELECT job_id, kind, subject_id, run_at, attempts, lease_owner, lease_until, last_error, alerted, created_at
FROM job_copy;

DROP TABLE job_copy;

CREATE INDEX job_due_idx ON job (run_at);
CREATE INDEX job_subject_idx ON job (subject_id, kind);
-- One catalog sync job and one reconciliation job, however many replicas start at once.
CREATE UNIQUE INDEX job_singleton_idx ON job (kind) WHERE kind IN ('sync_catalog', 'reconcile');
