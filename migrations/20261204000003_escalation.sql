-- The approver rule a pending request was escalated to (JSON: groups and users), set by
-- its escalation job: from then on they may decide it too.
ALTER TABLE access_request ADD COLUMN escalated_to TEXT;
