-- Revoked subjects: their tokens issued at or before `revoked_before` (seconds since
-- the epoch), and their tokens without `iat`, are refused.
CREATE TABLE revocations (
    sub            TEXT   PRIMARY KEY NOT NULL,
    revoked_before BIGINT NOT NULL
);
