/* ghl_fdw--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION ghl_fdw" to load this file. \quit

CREATE FUNCTION ghl_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION ghl_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER ghl_fdw
  HANDLER ghl_fdw_handler
  VALIDATOR ghl_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER ghl_fdw
  IS 'HighLevel (GHL) Contacts API: contacts, tasks, notes and appointments';

-- OAuth: the token store, token_status() and require_scope() (src/auth.c,
-- src/token_store.c, src/token_worker.c)

-- Current tokens of each OAuth user mapping.  The refresh token of a USER
-- MAPPING is only the seed: once rotated, the one here is the live one.
-- Secrets: readable only by the extension's owner (and superusers).
CREATE TABLE ghl_fdw.token_store (
    umid oid PRIMARY KEY,           -- pg_user_mapping.oid
    seed_fingerprint text NOT NULL, -- SHA-256 of the mapping's seed credentials
    access_token text,              -- the location token in Company mode
    expires_at timestamptz,
    refresh_token text,
    agency_token text,              -- Company mode: the agency token
    agency_expires_at timestamptz,
    scopes text,                    -- space separated, as the API grants them
    user_type text,
    company_id text,
    location_id text,
    last_refresh timestamptz
);
REVOKE ALL ON ghl_fdw.token_store FROM PUBLIC;

-- mapping owners call token_status(); the store itself stays closed
GRANT USAGE ON SCHEMA ghl_fdw TO PUBLIC;

-- the tokens of a dropped user mapping must not outlive it
CREATE FUNCTION ghl_fdw.forget_dropped_tokens() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM ghl_fdw.token_store
    WHERE umid IN (SELECT objid FROM pg_event_trigger_dropped_objects()
                   WHERE object_type = 'user mapping');
END $$;
REVOKE ALL ON FUNCTION ghl_fdw.forget_dropped_tokens() FROM PUBLIC;

CREATE EVENT TRIGGER ghl_fdw_forget_dropped_tokens ON sql_drop
    WHEN TAG IN ('DROP USER MAPPING', 'DROP SERVER', 'DROP OWNED')
    EXECUTE FUNCTION ghl_fdw.forget_dropped_tokens();

CREATE FUNCTION ghl_fdw.token_status(server_name text,
    OUT mode text, OUT user_type text, OUT location_id text,
    OUT company_id text, OUT scopes text[], OUT expires_at timestamptz,
    OUT last_refresh timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'ghl_fdw_token_status'
LANGUAGE C STRICT;

COMMENT ON FUNCTION ghl_fdw.token_status(text)
  IS 'the current user''s token on a GHL server: mode, user type, scopes, expiry; never a secret';

CREATE FUNCTION ghl_fdw.require_scope(server_name text,
    scope text DEFAULT 'contacts.write')
RETURNS void
AS 'MODULE_PATHNAME', 'ghl_fdw_require_scope'
LANGUAGE C STRICT;

COMMENT ON FUNCTION ghl_fdw.require_scope(text, text)
  IS 'fail unless the current user''s token on a GHL server has the scope (and, for a write scope, the server is not read_only)';
