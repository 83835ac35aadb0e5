-- oauthd's shared event log, schema version 1: created by the daemon in an
-- empty database.  Later versions add upgrade-<n>-to-<n+1>.sql beside it.

CREATE TABLE oauthd_schema (version integer NOT NULL);
INSERT INTO oauthd_schema VALUES (1);

-- The head row hands out positions: an append locks it, so appends commit
-- in position order and a follower reading "after my cursor" never skips
-- one that commits later.  It also holds the hash of the last record.
CREATE TABLE oauthd_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    pos bigint NOT NULL,
    hash bytea NOT NULL,
    partition_size bigint NOT NULL
);
INSERT INTO oauthd_head (pos, hash, partition_size)
    VALUES (0, decode(repeat('00', 32), 'hex'), 1000000);

-- Partitioned by position range, so compaction drops old records by
-- dropping whole partitions.  oauthd_append creates them as needed.
CREATE TABLE oauthd_log (
    pos bigint PRIMARY KEY,
    payload bytea NOT NULL,
    hash bytea NOT NULL
) PARTITION BY RANGE (pos);

-- Single use across nodes: a key held at most once, set by compare-and-set
-- in the same statement as the records that depend on it.
CREATE TABLE oauthd_claims (
    key text PRIMARY KEY,
    value text NOT NULL,
    expires double precision
);
CREATE INDEX oauthd_claims_expires ON oauthd_claims (expires) WHERE expires IS NOT NULL;

-- Snapshots of the live state at a position, in chunks; a start reads the
-- latest complete one, then the log after its position.
CREATE TABLE oauthd_snapshots (
    id bigserial PRIMARY KEY,
    pos bigint NOT NULL,
    hash bytea NOT NULL,
    records bigint NOT NULL DEFAULT 0,
    complete boolean NOT NULL DEFAULT false,
    node text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE oauthd_snapshot_chunks (
    snapshot bigint NOT NULL REFERENCES oauthd_snapshots ON DELETE CASCADE,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (snapshot, seq)
);

CREATE TABLE oauthd_nodes (
    id text PRIMARY KEY,
    applied bigint NOT NULL DEFAULT 0,
    seen timestamptz NOT NULL DEFAULT now()
);

-- One append, atomically: every claim must hold (else SQLSTATE OA001 with
-- the claim's key as the message, and nothing is changed), then the
-- payloads take the next positions, each hashed over the previous record's
-- hash, its position and its payload (oauthd.eventlog.chain).  Called in
-- autocommit, the head row stays locked until the commit.  Returns the
-- first position (NULL if there are no payloads).
CREATE FUNCTION oauthd_append(
    payloads bytea[], keys text[], vals text[], modes text[], expects text[],
    expiries double precision[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(cardinality(payloads), 0);
    base bigint;
    h bytea;
    size bigint;
    hashes bytea[] := '{}';
BEGIN
    FOR i IN 1 .. coalesce(cardinality(keys), 0) LOOP
        IF modes[i] = 'absent' THEN
            INSERT INTO oauthd_claims VALUES (keys[i], vals[i], expiries[i])
                ON CONFLICT DO NOTHING;
        ELSIF modes[i] = 'equal' THEN
            UPDATE oauthd_claims SET value = vals[i], expires = expiries[i]
                WHERE key = keys[i] AND value = expects[i];
        ELSE
            INSERT INTO oauthd_claims VALUES (keys[i], vals[i], expiries[i])
                ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires;
        END IF;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'OA001', MESSAGE = keys[i];
        END IF;
    END LOOP;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    SELECT pos, hash, partition_size INTO base, h, size FROM oauthd_head FOR UPDATE;
    IF base = 0 OR (base + n) / size > base / size THEN
        -- Every partition the new records need, and the next one.
        FOR k IN (base + 1) / size .. (base + n) / size + 1 LOOP
            IF to_regclass(format('%I', 'oauthd_log_p' || k)) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF oauthd_log FOR VALUES FROM (%s) TO (%s)',
                               'oauthd_log_p' || k, k * size, (k + 1) * size);
            END IF;
        END LOOP;
    END IF;
    FOR i IN 1 .. n LOOP
        h := sha256(h || int8send(base + i) || payloads[i]);
        hashes[i] := h;
    END LOOP;
    INSERT INTO oauthd_log (pos, payload, hash)
        SELECT base + t.i, t.payload, hashes[t.i]
        FROM unnest(payloads) WITH ORDINALITY AS t(payload, i);
    UPDATE oauthd_head SET pos = base + n, hash = h;
    RETURN base + 1;
END
$$;
