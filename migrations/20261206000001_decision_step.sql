-- Approval in steps (issue #12, item 1): the step (0-based) a decision was made at.
-- Every decision made before steps existed was made at the one step its policy had.
ALTER TABLE decision ADD COLUMN step BIGINT NOT NULL DEFAULT 0;
