-- Cluster mode: the fencing token of each meeting's current owner. A node that took a meeting
-- over raises it before it writes anything; records journalled under an older token (an owner
-- that lost its lease while paused) are set aside instead of stored.
CREATE TABLE meeting_fences (
    meeting_id TEXT PRIMARY KEY,
    fence BIGINT NOT NULL
);
