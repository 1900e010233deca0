-- Programs, meetings, bans and the facilitator audit log. Times are Unix milliseconds.
CREATE TABLE programs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_alg TEXT NOT NULL,
    token_key TEXT NOT NULL,
    api_key_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE meetings (
    id TEXT PRIMARY KEY,
    program_id TEXT NOT NULL REFERENCES programs(id),
    title TEXT NOT NULL,
    scheduled_start BIGINT,
    scheduled_end BIGINT,
    capacity BIGINT NOT NULL,
    settings TEXT NOT NULL,
    shared_with TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    ended_at BIGINT,
    deleted_at BIGINT
);
CREATE INDEX meetings_program ON meetings(program_id, created_at);

CREATE TABLE bans (
    meeting_id TEXT NOT NULL REFERENCES meetings(id),
    program_id TEXT NOT NULL,
    member_ref TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (meeting_id, program_id, member_ref)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id TEXT NOT NULL REFERENCES meetings(id),
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    target_name TEXT,
    detail TEXT
);
CREATE INDEX audit_log_meeting ON audit_log(meeting_id, id);
