-- Security-relevant actions: logins (and failed ones), logouts, refresh
-- token reuse, deletions, rate limiting. No foreign keys: the record of what
-- happened to an account outlives the account.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    -- What happened, e.g. `login.failed`, `refresh.reused`, `user.deleted`.
    action      text NOT NULL,
    -- Who did it, when known.
    actor_id    uuid,
    -- What it was done to: a user id, a post id, the handle a login tried.
    subject     text,
    client_ip   text,
    request_id  text
);
-- Retention pruning and "what happened recently" both walk by time.
CREATE INDEX audit_log_at_idx ON audit_log (at);
-- "What happened to this account".
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, at) WHERE actor_id IS NOT NULL;
