-- Records drained from a node's local journal carry an idempotency key (journal id and sequence
-- number), so a replay after a crash or an outage never stores a record twice.
ALTER TABLE presence ADD COLUMN record_key TEXT;
CREATE UNIQUE INDEX presence_record_key ON presence(record_key);
ALTER TABLE audit_log ADD COLUMN record_key TEXT;
CREATE UNIQUE INDEX audit_log_record_key ON audit_log(record_key);
