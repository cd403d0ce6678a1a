-- When a grant's revocation began (the worker claimed the deletion, just before asking
-- AWS): kept after the grant settles, so the admin dashboard can chart revocation
-- lateness (this minus ends_at) over days (issue #14, item 5). Never cleared.
ALTER TABLE access_grant ADD COLUMN deprovision_started_at BIGINT;
CREATE INDEX access_grant_deprovision_started_idx ON access_grant (deprovision_started_at);
