-- The attendance ledger (append-only), meeting heartbeats, final results, the server's keys.
ALTER TABLE meetings ADD COLUMN credit_policy TEXT;

CREATE TABLE presence (
    id BIGSERIAL PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    program_id TEXT NOT NULL,
    member_ref TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX presence_program_member ON presence(program_id, member_ref, at);
CREATE INDEX presence_meeting ON presence(meeting_id, program_id);
CREATE INDEX presence_at ON presence(at);

CREATE TABLE meeting_heartbeats (
    meeting_id TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);

CREATE TABLE attendance_results (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    program_id TEXT NOT NULL,
    member_ref TEXT NOT NULL,
    computed_at BIGINT NOT NULL,
    result TEXT NOT NULL,
    UNIQUE (meeting_id, program_id, member_ref)
);
CREATE INDEX attendance_results_program ON attendance_results(program_id, computed_at);

CREATE TABLE server_keys (
    kid TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    public_x TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
