-- Fencing: every claim of a job takes the next lease token, and a worker completes,
-- reschedules or renews a job only while the token it claimed is still the job's. A
-- worker whose lease lapsed (a step slower than the lease, a paused process) can no
-- longer delete or move a job another worker has taken over.
ALTER TABLE job ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;

-- The IAM Identity Center user id the assignment was made for, kept on the grant when
-- provisioning starts: the revocation deletes exactly that principal's assignment, never
-- whoever carries the person's email by then, and needs no lookup.
ALTER TABLE access_grant ADD COLUMN aws_principal_id TEXT;
