-- Portcullis schema. Portable between SQLite and PostgreSQL: TEXT ids made by the
-- server, BIGINT epoch milliseconds for every time, TEXT status columns with CHECKs.

CREATE TABLE app_user (
    user_id TEXT PRIMARY KEY,             -- issuer + '|' + subject; never the email alone
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    groups_json TEXT NOT NULL,            -- IdP groups at the last sign-in
    manager TEXT,                         -- manager's email or subject, from the IdP
    is_admin BIGINT NOT NULL,             -- 0 or 1: the Any driver has no SQLite boolean
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX app_user_email_idx ON app_user (email);

CREATE TABLE account (
    account_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    ou_id TEXT NOT NULL,
    ou_path TEXT NOT NULL,                -- '/r-xxxx/ou-aaaa-1/ou-aaaa-2/': ids from the root down
    synced_at BIGINT NOT NULL
);
CREATE INDEX account_ou_path_idx ON account (ou_path);

CREATE TABLE permission_set (
    permission_set_arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    session_duration_secs BIGINT NOT NULL,
    synced_at BIGINT NOT NULL
);

CREATE TABLE entitlement (
    entitlement_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    targets_json TEXT NOT NULL,
    policy_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE access_request (
    access_request_id TEXT PRIMARY KEY,
    requester_id TEXT NOT NULL REFERENCES app_user (user_id),
    entitlement_id TEXT NOT NULL REFERENCES entitlement (entitlement_id),
    justification TEXT NOT NULL,
    ticket TEXT,
    duration_secs BIGINT NOT NULL,
    starts_at BIGINT NOT NULL,
    decision_due_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('pending', 'approved', 'active', 'ended', 'rejected', 'cancelled', 'timed_out', 'failed')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX access_request_requester_idx ON access_request (requester_id, created_at);
CREATE INDEX access_request_status_idx ON access_request (status, created_at);
CREATE INDEX access_request_created_idx ON access_request (created_at);

CREATE TABLE decision (
    decision_id TEXT PRIMARY KEY,
    access_request_id TEXT NOT NULL REFERENCES access_request (access_request_id),
    approver_id TEXT NOT NULL REFERENCES app_user (user_id),
    verdict TEXT NOT NULL CHECK (verdict IN ('approved', 'rejected')),
    comment TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT decision_once_per_approver UNIQUE (access_request_id, approver_id)
);
CREATE INDEX decision_approver_idx ON decision (approver_id, created_at);

CREATE TABLE access_grant (
    access_grant_id TEXT PRIMARY KEY,
    access_request_id TEXT NOT NULL REFERENCES access_request (access_request_id),
    principal_id TEXT NOT NULL REFERENCES app_user (user_id),
    account_id TEXT NOT NULL,
    permission_set_arn TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('scheduled', 'provisioning', 'active', 'deprovisioning', 'revoked', 'failed')),
    operation_id TEXT,                    -- AWS request id of the create or delete in flight
    operation_started_at BIGINT,
    failure_reason TEXT,
    ended_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX access_grant_request_idx ON access_grant (access_request_id);
CREATE INDEX access_grant_cover_idx ON access_grant (principal_id, permission_set_arn, account_id, status);
CREATE INDEX access_grant_status_idx ON access_grant (status, ends_at);

CREATE TABLE job (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('provision', 'deprovision', 'decision_timeout', 'deliver_mail')),
    subject_id TEXT NOT NULL,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    alerted BIGINT NOT NULL,              -- 0 or 1
    created_at BIGINT NOT NULL
);
CREATE INDEX job_due_idx ON job (run_at);
CREATE INDEX job_subject_idx ON job (subject_id, kind);

CREATE TABLE outbox (
    outbox_id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'parked')),
    attempts BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_created_idx ON outbox (created_at);

-- Append-only, hash-chained: hash = sha256(prev_hash || canonical fields).
CREATE TABLE audit_event (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action TEXT NOT NULL,
    person_id TEXT,                       -- whom it concerns (the requester), for filtering
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    entitlement_id TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_event_actor_idx ON audit_event (actor_id, seq);
CREATE INDEX audit_event_person_idx ON audit_event (person_id, seq);
CREATE INDEX audit_event_entitlement_idx ON audit_event (entitlement_id, seq);
CREATE INDEX audit_event_action_idx ON audit_event (action, seq);

-- The chain's head, one row. Updating it first serialises audit writers on PostgreSQL.
CREATE TABLE audit_head (
    audit_head_id BIGINT PRIMARY KEY CHECK (audit_head_id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (audit_head_id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE web_session (
    session_hash TEXT PRIMARY KEY,        -- sha256 of the cookie value; the value itself is never stored
    user_id TEXT NOT NULL REFERENCES app_user (user_id),
    demo BIGINT NOT NULL,                 -- 0 or 1
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_session_user_idx ON web_session (user_id);

CREATE TABLE alert (
    alert_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX alert_open_idx ON alert (resolved_at, created_at);

-- Demo mode's simulated IAM Identity Center: assignments and their async operations.
CREATE TABLE sim_assignment (
    account_id TEXT NOT NULL,
    permission_set_arn TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, permission_set_arn, principal_id)
);

CREATE TABLE sim_operation (
    request_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('create', 'delete')),
    account_id TEXT NOT NULL,
    permission_set_arn TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'SUCCEEDED', 'FAILED')),
    ready_at BIGINT NOT NULL,
    failure_reason TEXT,
    created_at BIGINT NOT NULL
);
