-- The simulated organization's EventBridge Scheduler (issue #15): the demo's AWS-side
-- backstop, one row per schedule, named as in AWS (`portcullis-` and 40 hex digits). A
-- schedule whose time has come deletes its assignment from `sim_assignment` and itself,
-- as Scheduler's universal target and `ActionAfterCompletion = DELETE` would.
CREATE TABLE sim_schedule (
    name TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    permission_set_arn TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    fire_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sim_schedule_fire_idx ON sim_schedule (fire_at);
