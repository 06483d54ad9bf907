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
