-- Group membership as rows, so that "the members of cloud-approvers" is an indexed query
-- and never a read of every person (issue #13). Kept by `store::upsert_user` at each
-- sign-in; filled for the people already known by `Store::migrate` (JSON is read in Rust,
-- the same way on SQLite and PostgreSQL). `app_user.groups_json` stays the record of the
-- claims as they came.
CREATE TABLE user_group (
    group_name TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES app_user (user_id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_id)
);
CREATE INDEX user_group_user_idx ON user_group (user_id);
CREATE INDEX app_user_admin_idx ON app_user (is_admin);
