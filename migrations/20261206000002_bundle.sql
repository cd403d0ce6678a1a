-- Bundles (issue #12, item 10): requests asked for together share a bundle id; each is
-- decided by its own entitlement's policy.
ALTER TABLE access_request ADD COLUMN bundle_id TEXT;
CREATE INDEX access_request_bundle_idx ON access_request (bundle_id);
