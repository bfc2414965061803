-- Webhook delivery (issue 12): per endpoint, who delivers it (a claim that expires unless
-- renewed, by the database's clock) and the last event id delivered. One row holds both,
-- so only the claim's holder moves the cursor.
CREATE TABLE webhook_cursors (
    endpoint       text COLLATE "C" PRIMARY KEY,
    seq            bigint NOT NULL,
    holder         text NOT NULL,
    expires_at_ms  bigint NOT NULL
);
