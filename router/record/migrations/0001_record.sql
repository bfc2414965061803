-- The system of record (issue 11): what outlives a conversation. Ids sort bytewise
-- (COLLATE "C"), as in the embedded record, so keyset pages agree across implementations.

-- Closed conversations: the columns supervisors query, the transcript and the rest as JSON.
CREATE TABLE archived_conversations (
    id              text COLLATE "C" PRIMARY KEY,
    customer_id     text COLLATE "C",
    agent_id        text COLLATE "C",
    department      text NOT NULL,
    language        text NOT NULL,
    started_at_ms   bigint NOT NULL,
    closed_at_ms    bigint NOT NULL,
    rating_good     boolean,
    rating_comment  text,
    transcript      jsonb NOT NULL,
    details         jsonb NOT NULL
);
-- Lists run newest first with a keyset cursor on (closed_at_ms, id): one index per filter
-- that a supervisor uses, each ending in the list order, and the plain one for the date range
-- and retention.
CREATE INDEX archived_by_closed ON archived_conversations (closed_at_ms DESC, id DESC);
CREATE INDEX archived_by_agent ON archived_conversations (agent_id, closed_at_ms DESC, id DESC);
CREATE INDEX archived_by_department ON archived_conversations (department, closed_at_ms DESC, id DESC);
CREATE INDEX archived_by_language ON archived_conversations (language, closed_at_ms DESC, id DESC);
CREATE INDEX archived_by_customer ON archived_conversations (customer_id, closed_at_ms DESC, id DESC);
CREATE INDEX archived_by_rating ON archived_conversations (rating_good, closed_at_ms DESC, id DESC);

-- Customer profiles: the tier in a column of its own, so no update of the data undoes it.
CREATE TABLE customer_profiles (
    customer_id  text COLLATE "C" PRIMARY KEY,
    version      bigint NOT NULL,
    tier         text,
    data         jsonb NOT NULL
);

-- The sequences that must be gapless and in commit order (a PostgreSQL SEQUENCE is neither):
-- a writer bumps its row, holding the row lock to its commit.
CREATE TABLE record_counters (
    name  text PRIMARY KEY,
    last  bigint NOT NULL
);
INSERT INTO record_counters (name, last) VALUES ('outbox', 0), ('directory', 0), ('audit', 0);

-- The integration-event outbox: one cluster-wide sequence.
CREATE TABLE outbox_events (
    seq              bigint PRIMARY KEY,
    kind             text NOT NULL,
    customer_id      text COLLATE "C",
    conversation_id  text COLLATE "C",
    at_ms            bigint NOT NULL,
    payload          jsonb NOT NULL
);
CREATE INDEX outbox_by_customer ON outbox_events (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX outbox_by_conversation ON outbox_events (conversation_id) WHERE conversation_id IS NOT NULL;

-- The agent directory: versioned JSON documents by kind and id.
CREATE TABLE directory_entries (
    kind           text NOT NULL,
    id             text COLLATE "C" NOT NULL,
    version        bigint NOT NULL,
    disabled       boolean NOT NULL,
    doc            jsonb NOT NULL,
    updated_at_ms  bigint NOT NULL,
    updated_by     text NOT NULL,
    PRIMARY KEY (kind, id)
);

-- Its change feed, followed by every node.
CREATE TABLE directory_changes (
    seq       bigint PRIMARY KEY,
    kind      text NOT NULL,
    id        text COLLATE "C" NOT NULL,
    version   bigint NOT NULL,
    disabled  boolean NOT NULL,
    at_ms     bigint NOT NULL
);

-- Who changed what, when.
CREATE TABLE audit_log (
    id       bigint PRIMARY KEY,
    at_ms    bigint NOT NULL,
    actor    text NOT NULL,
    action   text NOT NULL,
    subject  text NOT NULL,
    detail   jsonb NOT NULL
);

-- Operator tokens: the digest of the secret, never the secret.
CREATE TABLE operator_tokens (
    name    text COLLATE "C" PRIMARY KEY,
    digest  text NOT NULL UNIQUE,
    scopes  text[] NOT NULL
);
