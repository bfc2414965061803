-- Retention of integration events by time (Record::delete_events_older_than).
CREATE INDEX outbox_by_time ON outbox_events (at_ms);
