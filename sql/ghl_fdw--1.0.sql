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
