-- Meeting formats (a program's agendas) and recurring series. A meeting keeps a copy of its
-- format as it was when the meeting was created, so an edit never changes a planned meeting.
CREATE TABLE formats (
    id TEXT PRIMARY KEY,
    program_id TEXT NOT NULL REFERENCES programs(id),
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX formats_program ON formats(program_id, created_at);

-- A series: its definition (rule, time zone, length, format, policy) as JSON in `spec`.
-- `generation` moves on when the schedule of future occurrences changes.
CREATE TABLE series (
    id TEXT PRIMARY KEY,
    program_id TEXT NOT NULL REFERENCES programs(id),
    title TEXT NOT NULL,
    spec TEXT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    cancelled_at BIGINT
);
CREATE INDEX series_program ON series(program_id, created_at);

ALTER TABLE meetings ADD COLUMN format_id TEXT;
ALTER TABLE meetings ADD COLUMN format TEXT;
ALTER TABLE meetings ADD COLUMN series_id TEXT;
-- Which occurrence of its series a meeting is: `{generation}:{start in Unix ms}`, as the rule made it.
ALTER TABLE meetings ADD COLUMN occurrence_key TEXT;
CREATE UNIQUE INDEX meetings_series_occurrence ON meetings(series_id, occurrence_key);
CREATE INDEX meetings_series_start ON meetings(series_id, scheduled_start);
