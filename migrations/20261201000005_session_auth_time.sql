-- When the person last proved who they are: the identity provider's `auth_time` for an
-- OpenID Connect sign-in (the sign-in's own time when the provider sends none), the
-- sign-in's time in demo mode. Deciding a request or revoking a grant needs a recent one
-- ([session] reauth_after_secs); NULL (sessions from before) counts as the session's start.
ALTER TABLE web_session ADD COLUMN authenticated_at BIGINT;
