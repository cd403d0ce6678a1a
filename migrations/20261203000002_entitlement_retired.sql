-- Retired entitlements (issue #12): one no longer declared in the configuration stops
-- being requestable at the next start; its live grants run to their end, and the admin
-- page shows it as retired since this time. NULL: live. Declared again: live again.
ALTER TABLE entitlement ADD COLUMN retired_at BIGINT;
