-- The one definition of a celebrity: an author with at least `threshold`
-- followers. Their posts are pulled by readers instead of fanned out to
-- every follower's feed (one post would cost a write per follower). Every
-- query that decides it calls this; PostgreSQL inlines a one-expression SQL
-- function, so the plans are those of the bare comparison.
CREATE FUNCTION is_celebrity(follower_count bigint, threshold bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT follower_count >= threshold $$;
