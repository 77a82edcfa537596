-- End-to-end acknowledgement: where each event landed on its stream, and
-- when the workers had applied it. A published event not applied is checked
-- against its stream (feed_core::delivery) and published again if Redis
-- lost it, so the outbox, not Redis, decides that an event took effect.
ALTER TABLE outbox
    ADD COLUMN stream_entry text,
    ADD COLUMN stream_epoch text,
    ADD COLUMN applied_at   timestamptz;

-- Events published before this migration were tracked by nobody: they are
-- taken as applied (their streams held them through the upgrade).
UPDATE outbox SET applied_at = published_at WHERE published_at IS NOT NULL;

-- The relay's look for published, unapplied events, oldest first per type.
CREATE INDEX outbox_unapplied_idx ON outbox (event_type, published_at)
    WHERE applied_at IS NULL AND published_at IS NOT NULL;
-- Pruning applied events past retention.
DROP INDEX outbox_published_idx;
CREATE INDEX outbox_applied_idx ON outbox (applied_at) WHERE applied_at IS NOT NULL;
