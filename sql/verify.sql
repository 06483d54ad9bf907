--
-- ghl_fdw.verify() re-reads a sample of the synced records from the API:
-- after a sync everything matches; after the mock's data changed it finds
-- every change (the sample covers everything here); a small sample still
-- finds the newest changes; after the next sync nothing differs.
--
SELECT test.mock_reset(300, 7);
INSERT INTO ghl_fdw.sync_settings (server_name, appointments_back, appointments_ahead)
VALUES ('ghl', '10 years', '2 years');
SELECT resource, status FROM ghl_fdw.sync('ghl');

-- bad calls
SELECT test.error_of($$SELECT * FROM ghl_fdw.verify('nosuch')$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.verify('ghl', 0)$$);
SELECT test.error_of($$SELECT * FROM ghl_fdw.verify('ghl', NULL)$$);

SELECT test.mock_forget();
SELECT * FROM ghl_fdw.verify('ghl', 1000);
-- one GET per sampled contact, one list per contact and child resource,
-- and one search for the contacts updated most recently upstream
SELECT * FROM test.request_counts();

-- 5 contacts updated, 2 created, 2 deleted; tasks edited and created;
-- notes edited and deleted; appointments edited
SELECT m->'updated' IS NOT NULL AS mutated FROM test.mock('POST', '/_mock/mutate',
    '{"seed": 1, "update": 5, "create": 2, "delete": 2, "task_edits": 3, "note_edits": 2,
      "note_deletes": 1, "task_creates": 2, "appointment_edits": 2}') AS m;
SELECT * FROM ghl_fdw.verify('ghl', 1000);
-- a sample of 10 contacts still sees the newest changes upstream
SELECT resource, differing > 0 OR missing_here > 0 AS drift_found, differing_columns
FROM ghl_fdw.verify('ghl', 10) WHERE resource = 'contacts';

SELECT resource, status FROM ghl_fdw.sync('ghl', full => true);
SELECT * FROM ghl_fdw.verify('ghl', 1000);

-- a table synced through the calendars holds the appointments within the
-- horizon only: those beyond it, upstream, are not missing
UPDATE ghl_fdw.sync_settings SET appointments_back = now() - timestamptz '2024-01-01', appointments_ahead = '1 year';
TRUNCATE rankr.appointments;
SELECT resource, status FROM ghl_fdw.sync('ghl', '{appointments}', full => true);
SELECT count(*) > 0 AS some_beyond_the_horizon
FROM test.mock('GET', '/_mock/state') AS s, jsonb_array_elements(s->'appointments') AS a
WHERE (a->>'startTime')::timestamptz < '2024-01-01';
SELECT resource, matching > 0 AS some_match, differing, missing_here, missing_there
FROM ghl_fdw.verify('ghl', 1000)
WHERE resource = 'appointments';

-- leave things as they were
DROP SCHEMA rankr CASCADE;
DELETE FROM ghl_fdw.sync_state;
DELETE FROM ghl_fdw.sync_runs;
DELETE FROM ghl_fdw.sync_passes;
DELETE FROM ghl_fdw.sync_settings;
SELECT test.mock_reset(100, 42);
