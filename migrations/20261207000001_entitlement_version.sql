-- Entitlement versions (issue #14, item 7): every change of an entitlement keeps its whole
-- definition (the configuration file's TOML), who made it and when; the admin page shows
-- each version with its difference from the one before.
CREATE TABLE entitlement_version (
    entitlement_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- created | updated | retired | restored
    change TEXT NOT NULL,
    -- where the change came from: "the configuration file", "the demo catalog"
    changed_by TEXT NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (entitlement_id, version)
);
-- The admin page reads an entitlement's newest requests.
CREATE INDEX access_request_entitlement_idx ON access_request (entitlement_id, created_at);
