-- Each stream's epoch: made with the stream's row, replaced whenever the stream is found
-- to have moved back (a restore, a failover that lost commits), so that a version of one
-- epoch is never taken for the same version of another. The default is evaluated per
-- row, existing rows included.
ALTER TABLE providers
    ADD COLUMN epoch TEXT NOT NULL
    DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 12);
ALTER TABLE room_streams
    ADD COLUMN epoch TEXT NOT NULL
    DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 12);
