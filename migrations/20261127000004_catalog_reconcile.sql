-- Catalog sync and reconciliation: two more job kinds (the job table is rebuilt as in
-- 0002, since SQLite cannot alter a CHECK constraint), the OUs of the organization, the
-- assignments the portal knows the origin of, and a record of each maintenance run.

CREATE TABLE job_copy AS SELECT * FROM job;

DROP TABLE job;

CREATE TABLE job (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('provision', 'deprovision', 'decision_timeout', 'deliver_mail',
        'announce_request', 'approval_reminder', 'approval_escalation', 'ending_soon',
        'sync_catalog', 'reconcile')),
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

-- Organizational units, for showing an account's OU path by name.
CREATE TABLE org_unit (
    ou_id TEXT PRIMARY KEY,               -- the root too (r-xxxx)
    name TEXT NOT NULL,
    parent_id TEXT,
    path TEXT NOT NULL,                   -- '/r-xxxx/ou-aaaa-1/': ids from the root down, itself included
    synced_at BIGINT NOT NULL
);

-- Assignments whose origin the portal knows: 'portal' once it asked AWS to create one
-- (written before the call, so a crash after it still counts as the portal's), 'external'
-- when a grant found it already there. Only the portal's own are deleted when their last
-- grant ends (unless configuration says the portal owns the permission set).
CREATE TABLE managed_assignment (
    account_id TEXT NOT NULL,
    permission_set_arn TEXT NOT NULL,
    user_id TEXT NOT NULL,                -- the portal's user id
    origin TEXT NOT NULL CHECK (origin IN ('portal', 'external')),
    created_at BIGINT NOT NULL,
    -- Set by reconciliation before it deletes the assignment: a grant about to be
    -- provisioned waits until the deletion is over instead of counting on it.
    deleting_since BIGINT,
    PRIMARY KEY (account_id, permission_set_arn, user_id)
);

-- Assignments held by live grants before this table existed: the portal's, unless a grant
-- found it already in AWS when it was activated ('external' wins for a shared one).
INSERT INTO managed_assignment (account_id, permission_set_arn, user_id, origin, created_at)
SELECT g.account_id, g.permission_set_arn, g.principal_id,
       MIN(CASE WHEN EXISTS (
               SELECT 1 FROM audit_event e
               WHERE e.subject_id = g.access_grant_id AND e.action = 'grant.activated'
                 AND e.detail = 'assignment already existed in AWS')
           THEN 'external' ELSE 'portal' END),
       0
FROM access_grant g WHERE g.status IN ('provisioning', 'active', 'deprovisioning')
GROUP BY g.account_id, g.permission_set_arn, g.principal_id;

-- One catalog sync or reconciliation run, with its progress while it runs.
CREATE TABLE maintenance_run (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('sync_catalog', 'reconcile')),
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    progress TEXT NOT NULL,
    summary TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX maintenance_run_kind_idx ON maintenance_run (kind, started_at);
