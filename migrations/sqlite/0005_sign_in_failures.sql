-- Failed sign-ins, one row per failure, so that every server sharing this index counts the
-- same failures for a client address (they were in each process's memory). A row is only
-- ever inserted, so replicas recording failures at once never lose one; rows older than the
-- window are pruned as new failures come in.
CREATE TABLE sign_in_failures (
    client  TEXT NOT NULL,
    -- Unix milliseconds, from the clock of the server that saw the failure.
    at_ms   INTEGER NOT NULL
);
CREATE INDEX sign_in_failures_client ON sign_in_failures (client, at_ms);
CREATE INDEX sign_in_failures_at ON sign_in_failures (at_ms);
