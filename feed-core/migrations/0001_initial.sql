-- Fanout's source of truth. Redis holds only what can be rebuilt from here.

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    -- Stored normalized (lower case), so uniqueness is case-insensitive.
    handle          text NOT NULL UNIQUE,
    display_name    text NOT NULL,
    password_hash   text NOT NULL,
    -- Denormalized so the worker can tell a "celebrity" (not fanned out on
    -- write) without counting rows on every post.
    follower_count  bigint NOT NULL DEFAULT 0 CHECK (follower_count >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE follows (
    follower_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
-- Fan-out walks a followee's followers in keyset order.
CREATE INDEX follows_followee_idx ON follows (followee_id, follower_id);

CREATE TABLE posts (
    -- UUIDv7: time-ordered, so "newest first" is "id descending".
    id          uuid PRIMARY KEY,
    author_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content     text NOT NULL,
    like_count  bigint NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    created_at  timestamptz NOT NULL
);
-- A user's posts, newest first (profile pages, feed rebuilds, backfill).
CREATE INDEX posts_author_idx ON posts (author_id, id DESC);

CREATE TABLE likes (
    post_id     uuid NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Every token minted by rotating another shares its family: reusing a
    -- spent token revokes the whole family.
    family_id   uuid NOT NULL,
    -- SHA-256 of the token: a leaked table does not leak usable tokens.
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

-- Every domain event, written in the transaction that caused it. A row with
-- no published_at is on no stream yet: the relay publishes it.
CREATE TABLE outbox (
    event_id      uuid PRIMARY KEY,
    event_type    text NOT NULL,
    envelope      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (created_at) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Stream entries the workers gave up on, with why.
CREATE TABLE dead_letters (
    id               bigserial PRIMARY KEY,
    stream           text NOT NULL,
    entry_id         text NOT NULL,
    event_id         uuid,
    event_type       text,
    payload          text NOT NULL,
    error            text NOT NULL,
    attempts         integer NOT NULL,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, entry_id)
);
