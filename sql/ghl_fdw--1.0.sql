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

-- Request counters per server: requests sent, retries, 429s received,
-- waits of the rate-limit governor (and their total length), response
-- bytes, and requests refused by daily_budget_floor.  "shared" tells
-- whether they cover the whole cluster (ghl_fdw preloaded) or only this
-- backend.
CREATE FUNCTION request_stats(
    OUT server_name text,
    OUT requests bigint,
    OUT retries bigint,
    OUT rate_limited bigint,
    OUT throttle_waits bigint,
    OUT throttle_wait_ms bigint,
    OUT bytes bigint,
    OUT budget_refusals bigint,
    OUT shared boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ghl_fdw_request_stats'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW request_stats AS SELECT * FROM request_stats();

CREATE FUNCTION request_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'ghl_fdw_request_stats_reset'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION request_stats_reset() FROM PUBLIC;
