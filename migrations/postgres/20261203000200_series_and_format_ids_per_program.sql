-- Series ids and format ids are per program, as meeting ids are: two programs may each have a
-- series `tuesdays` and a format `twelve-step`. `local_id` is the id the program gave it (unique
-- within the program, never reused: a cancelled series and a deleted format keep theirs); `id`
-- stays the server's key, which occurrences (`meetings.series_id`) and the rest name it by. New
-- ones get a key made from (program, id); older ones keep their id as their key, so their
-- occurrences, attendance and links go on working.
ALTER TABLE series ADD COLUMN local_id TEXT NOT NULL DEFAULT '';
UPDATE series SET local_id = id;
CREATE UNIQUE INDEX series_program_local_id ON series(program_id, local_id);
ALTER TABLE formats ADD COLUMN local_id TEXT NOT NULL DEFAULT '';
UPDATE formats SET local_id = id;
CREATE UNIQUE INDEX formats_program_local_id ON formats(program_id, local_id);
