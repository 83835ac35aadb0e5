-- oauthd's shared event log, schema version 2: created by the daemon in an
-- empty database (upgrade-1-to-2.sql upgrades a version 1 one).

CREATE TABLE oauthd_schema (version integer NOT NULL);
INSERT INTO oauthd_schema VALUES (2);

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
    hash bytea NOT NULL,
    -- When it was appended: compaction keeps the audit retention's worth.
    at timestamptz NOT NULL DEFAULT now()
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

-- Settings of the log itself: 'key' is a digest that tells whether a
-- node's secret key is the one the log was written with (never the key).
CREATE TABLE oauthd_settings (
    name text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE oauthd_nodes (
    id text PRIMARY KEY,
    applied bigint NOT NULL DEFAULT 0,
    seen timestamptz NOT NULL DEFAULT now()
);

-- The appends a writer has gathered, in one statement (group commit).  Each
-- append is atomic: every claim of it must hold, else it takes nothing (its
-- conflicts entry names the claim's key, and its claims are undone); the
-- payloads of the others take the next positions, in order, each hashed over
-- the previous record's hash, its position and its payload
-- (oauthd.eventlog.chain).  Called in autocommit, the head row stays locked
-- until the commit, so records commit in position order.  Claims' keys are
-- locked first, in one order, so two nodes' batches cannot deadlock.
-- lasts: per append, the position of its last record (of the one before
-- it if it has none; NULL if refused).
CREATE FUNCTION oauthd_append(
    payloads bytea[], counts integer[],
    keys text[], vals text[], modes text[], expects text[], expiries double precision[],
    claim_counts integer[],
    OUT lasts bigint[], OUT conflicts text[]
) LANGUAGE plpgsql AS $$
DECLARE
    appends integer := coalesce(cardinality(counts), 0);
    taken boolean[];
    accepted bytea[] := '{}';
    before_claims integer := 0;
    before_payloads integer := 0;
    n integer;
    base bigint;
    h bytea;
    size bigint;
    hashes bytea[] := '{}';
BEGIN
    IF appends = 0 THEN
        RETURN;
    END IF;
    lasts := array_fill(NULL::bigint, ARRAY[appends]);
    conflicts := array_fill(NULL::text, ARRAY[appends]);
    taken := array_fill(true, ARRAY[appends]);
    PERFORM pg_advisory_xact_lock(28513, hashtext(k))
        FROM (SELECT DISTINCT k FROM unnest(keys) AS u(k) ORDER BY 1) AS sorted(k);
    FOR a IN 1 .. appends LOOP
        IF claim_counts[a] > 0 THEN
            BEGIN
                FOR i IN before_claims + 1 .. before_claims + claim_counts[a] LOOP
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
            EXCEPTION WHEN SQLSTATE 'OA001' THEN
                taken[a] := false;
                conflicts[a] := SQLERRM;
            END;
        END IF;
        IF taken[a] THEN
            accepted := accepted || payloads[before_payloads + 1 : before_payloads + counts[a]];
        END IF;
        before_claims := before_claims + claim_counts[a];
        before_payloads := before_payloads + counts[a];
    END LOOP;
    n := coalesce(cardinality(accepted), 0);
    IF n = 0 THEN
        SELECT pos INTO base FROM oauthd_head;
    ELSE
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
            h := sha256(h || int8send(base + i) || accepted[i]);
            hashes[i] := h;
        END LOOP;
        INSERT INTO oauthd_log (pos, payload, hash)
            SELECT base + t.i, t.payload, hashes[t.i]
            FROM unnest(accepted) WITH ORDINALITY AS t(payload, i);
        UPDATE oauthd_head SET pos = base + n, hash = h;
    END IF;
    FOR a IN 1 .. appends LOOP
        IF taken[a] THEN
            base := base + counts[a];
            lasts[a] := base;
        END IF;
    END LOOP;
END
$$;
