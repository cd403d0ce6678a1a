-- Mail reminders need new job kinds. SQLite cannot alter a CHECK constraint, so the job
-- table is rebuilt with the wider one, in SQL that PostgreSQL runs as well: copy the rows
-- aside, drop the table (its indexes go with it), create it again under its own name (so
-- PostgreSQL's constraint and index names stay job_pkey, job_kind_check), copy back.

CREATE TABLE job_copy AS SELECT * FROM job;

DROP TABLE job;

CREATE TABLE job (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('provision', 'deprovision', 'decision_timeout', 'deliver_mail',
        'announce_request', 'approval_reminder', 'approval_escalation', 'ending_soon')),
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

-- The admin page lists parked messages.
CREATE INDEX outbox_status_idx ON outbox (status, created_at);
