-- Identity binding, and demo and production never sharing a database.
--
-- 1. `app_user.email_verified`: whether the identity provider vouched for the email at the
--    person's last sign-in (0 or 1). Rows from before this migration were never checked,
--    so they start unverified and become verified at the person's next sign-in (which now
--    requires it unless `oidc.require_verified_email = false`). Until then they are matched
--    by user id only (`Principal::is_known_as`). Demo personas are rewritten at every demo
--    start, verified.
-- 2. Emails are unique, ignoring case: `app_user_email_unique`. Rows that already collide
--    cannot be told apart by the database, so the migration does not fail (a portal that
--    does not start revokes nothing): the account that had the email first (earliest
--    `created_at`, then smallest `user_id`) keeps it; every later one gets the placeholder
--    `(email conflict) <user_id>`, which is no address, names nobody and receives no mail,
--    and loses its sessions. Keeping the first fails safe: someone who claimed another
--    person's email later never inherits that person's approvals. When the later account
--    is the legitimate one (a person re-created at the provider), its next sign-in is
--    refused as an email conflict until an administrator gives the stale account another
--    email (README, "Sign-in").
-- 3. `portal_mode`: which command uses this database, `demo` or `serve`, claimed at the
--    first start. Demo refuses a database `serve` has used and `serve` refuses a demo one.
--    A database from before this migration is classified by its users: demo personas (or a
--    demo session) make it `demo`, any other user makes it `serve`, none leaves it
--    unclaimed.

ALTER TABLE app_user ADD COLUMN email_verified BIGINT NOT NULL DEFAULT 0;

UPDATE app_user SET email = '(email conflict) ' || user_id, email_verified = 0
WHERE EXISTS (
    SELECT 1 FROM app_user AS earlier
    WHERE lower(earlier.email) = lower(app_user.email)
      AND (earlier.created_at < app_user.created_at
           OR (earlier.created_at = app_user.created_at AND earlier.user_id < app_user.user_id))
);

DELETE FROM web_session
WHERE user_id IN (SELECT user_id FROM app_user WHERE email LIKE '(email conflict) %');

CREATE UNIQUE INDEX app_user_email_unique ON app_user (lower(email));

CREATE TABLE portal_mode (
    portal_mode_id BIGINT PRIMARY KEY CHECK (portal_mode_id = 1),
    mode TEXT NOT NULL CHECK (mode IN ('demo', 'serve')),
    claimed_at BIGINT NOT NULL
);

INSERT INTO portal_mode (portal_mode_id, mode, claimed_at)
SELECT 1, 'demo', 0
WHERE EXISTS (SELECT 1 FROM app_user WHERE user_id LIKE 'demo|%')
   OR EXISTS (SELECT 1 FROM web_session WHERE demo = 1);

INSERT INTO portal_mode (portal_mode_id, mode, claimed_at)
SELECT 1, 'serve', 0
WHERE NOT EXISTS (SELECT 1 FROM portal_mode)
  AND EXISTS (SELECT 1 FROM app_user);
