-- Approver groups as the directory lists them (IAM Identity Center's Identity Store, which
-- the identity provider keeps in step with the same groups; the simulated directory in demo
-- mode): so that approvers who never signed in to the portal are told of requests too
-- (issue #12, item 0). Replaced as a whole by each catalog sync; read only to address mail,
-- never to decide who may approve (that is always the signed-in person's own claims).
CREATE TABLE directory_member (
    group_name TEXT NOT NULL,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    refreshed_at BIGINT NOT NULL,
    PRIMARY KEY (group_name, email)
);
