-- Users of the REST API and the UI, their API tokens and their browser sessions. Sessions are
-- rows, not process memory, so that every server sharing this index knows them.
-- password_hash is an Argon2id PHC string; tokens and session IDs are kept only as the hex
-- SHA-256 of the secret the client holds.
CREATE TABLE users (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at     TEXT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash    TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    label         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_name);

CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    -- Unix seconds.
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- The audit trail behind GET /audit: who viewed, downloaded, uploaded or deleted what, from
-- where, when. Written in batches shortly after each request.
CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    user_name    TEXT,
    client       TEXT NOT NULL,
    action       TEXT NOT NULL,
    level        TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    detail       TEXT NOT NULL,
    http_status  BIGINT NOT NULL
);
CREATE INDEX audit_events_user ON audit_events (user_name, seq);
