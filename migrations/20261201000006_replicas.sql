-- The replicas that run against this database, each with its last heartbeat. The AWS
-- call budget is shared among the live ones: each takes 1/N of it (README, "Replicas").
CREATE TABLE replica (
    replica_id TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
