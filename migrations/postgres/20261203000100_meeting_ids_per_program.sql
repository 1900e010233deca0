-- Meeting ids are per program: two programs may each have a meeting `tuesday`. `local_id` is the
-- id the program gave the meeting (unique within the program, never reused, deleted meetings
-- included); `id` stays the server's key that every other table, the journal, leases and resume
-- tokens use. New meetings get a key made from (program, id); meetings created before keep their
-- id as their key, so their ledger, bans, audit log, journal records and links go on working.
ALTER TABLE meetings ADD COLUMN local_id TEXT NOT NULL DEFAULT '';
UPDATE meetings SET local_id = id;
CREATE UNIQUE INDEX meetings_program_local_id ON meetings(program_id, local_id);
