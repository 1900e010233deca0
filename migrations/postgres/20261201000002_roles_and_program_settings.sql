-- The role a member was admitted with (exports show it; observers and, where a program says so,
-- facilitators earn no credit), and the program setting for facilitation credit. Additive only.
ALTER TABLE presence ADD COLUMN role TEXT;
ALTER TABLE programs ADD COLUMN facilitation_credit BIGINT NOT NULL DEFAULT 1;
