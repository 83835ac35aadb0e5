-- Schema version 1 to 2: when each record was appended (compaction keeps
-- the audit retention's worth), and the log's settings (the key's digest).

ALTER TABLE oauthd_log ADD COLUMN at timestamptz NOT NULL DEFAULT now();
CREATE TABLE oauthd_settings (
    name text PRIMARY KEY,
    value text NOT NULL
);
