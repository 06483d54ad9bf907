/* ghl_fdw--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION ghl_fdw UPDATE TO '1.1'" to load this file. \quit

-- Security: the event trigger that forgets the tokens of dropped user
-- mappings runs as the store's owner; nothing of the dropping role's may
-- resolve in it.
CREATE OR REPLACE FUNCTION ghl_fdw.forget_dropped_tokens() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM ghl_fdw.token_store
    WHERE umid OPERATOR(pg_catalog.=) ANY (
        SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()
        WHERE object_type OPERATOR(pg_catalog.=) 'user mapping');
END $$;

-- Security: request_stats() shows only the servers the caller may use, so
-- its view is open to everybody.
GRANT SELECT ON ghl_fdw.request_stats TO PUBLIC;

-- Webhooks: verified, deduplicated deliveries (src/webhook.c,
-- src/webhook_keys.c, src/webhook_apply.c; the receiver src/webhookd/)

-- The public keys a delivery's signature must verify with: X-GHL-Signature
-- is Ed25519, the legacy x-wh-signature RSA-SHA256.  Superusers manage
-- them; every backend re-reads them when they change.
CREATE TABLE ghl_fdw.webhook_keys (
    key_id text PRIMARY KEY,
    algorithm text NOT NULL CHECK (algorithm IN ('ed25519', 'rsa-sha256')),
    public_key text NOT NULL,       -- PEM, "-----BEGIN PUBLIC KEY-----"
    enabled boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE ghl_fdw.webhook_keys IS
  'trusted public keys of webhook signatures: any enabled key of its algorithm verifies a delivery';
REVOKE ALL ON ghl_fdw.webhook_keys FROM PUBLIC;

-- a key that cannot verify anything is refused when written
CREATE FUNCTION ghl_fdw._webhook_key_check() RETURNS trigger
AS 'MODULE_PATHNAME', 'ghl_fdw_webhook_key_check'
LANGUAGE C;
CREATE TRIGGER webhook_key_check BEFORE INSERT OR UPDATE ON ghl_fdw.webhook_keys
    FOR EACH ROW EXECUTE FUNCTION ghl_fdw._webhook_key_check();

-- backends keep the keys parsed: tell them to read them again
CREATE FUNCTION ghl_fdw._webhook_keys_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'ghl_fdw_webhook_keys_changed'
LANGUAGE C;
CREATE TRIGGER webhook_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ghl_fdw.webhook_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ghl_fdw._webhook_keys_changed();

-- HighLevel's published keys.  pg_dump carries the keys added after
-- these, which the extension script recreates.
INSERT INTO ghl_fdw.webhook_keys (key_id, algorithm, public_key) VALUES
('highlevel-ed25519', 'ed25519', '-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
'),
('highlevel-rsa-legacy', 'rsa-sha256', '-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
');
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.webhook_keys',
    $$WHERE key_id NOT IN ('highlevel-ed25519', 'highlevel-rsa-legacy')$$);

-- The ledger: one row per webhookId ever accepted (until pruned), so that
-- a second delivery of it is a duplicate.  outcome is NULL only inside
-- the transaction of its delivery.
CREATE TABLE ghl_fdw.webhook_events (
    webhook_id text PRIMARY KEY,
    type text NOT NULL,
    location_id text,
    company_id text,
    event_time timestamptz NOT NULL,    -- the delivery's own timestamp
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome text CHECK (outcome IN ('applied', 'stale', 'ignored')),
    key_id text                         -- the key that verified it; NULL: unsigned
);
CREATE INDEX webhook_events_received_at ON ghl_fdw.webhook_events (received_at);
COMMENT ON TABLE ghl_fdw.webhook_events IS
  'ledger of accepted webhook deliveries, one row per webhookId, pruned after ghl_fdw.webhook_retention';
REVOKE ALL ON ghl_fdw.webhook_events FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('ghl_fdw.webhook_events', '');

-- What a receiver calls for each delivery.  Closed to PUBLIC: grant
-- EXECUTE to the receiver's role; it needs no privilege on the tables.
CREATE FUNCTION ghl_fdw.apply_webhook(body text, headers jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'ghl_fdw_apply_webhook'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) IS
  'verify, deduplicate and apply one webhook delivery: applied, duplicate, stale or ignored';
REVOKE ALL ON FUNCTION ghl_fdw.apply_webhook(text, jsonb) FROM PUBLIC;

CREATE FUNCTION ghl_fdw.prune_webhook_events(older_than interval DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ghl_fdw_prune_webhook_events'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ghl_fdw.prune_webhook_events(interval) IS
  'delete webhook ledger rows older than older_than (default ghl_fdw.webhook_retention)';
REVOKE ALL ON FUNCTION ghl_fdw.prune_webhook_events(interval) FROM PUBLIC;
