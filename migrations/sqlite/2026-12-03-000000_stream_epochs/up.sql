-- Each stream's epoch: made with the stream's row, replaced whenever the stream is found
-- to have moved back (a restore, a failover that lost commits), so that a version of one
-- epoch is never taken for the same version of another.
ALTER TABLE providers ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
ALTER TABLE room_streams ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
UPDATE providers SET epoch = lower(hex(randomblob(6)));
UPDATE room_streams SET epoch = lower(hex(randomblob(6)));

-- SQLite cannot add a column whose default is an expression: a new row gets its epoch
-- right after the insert, in the same transaction.
CREATE TRIGGER providers_epoch AFTER INSERT ON providers WHEN NEW.epoch = ''
BEGIN
    UPDATE providers SET epoch = lower(hex(randomblob(6))) WHERE id = NEW.id;
END;
CREATE TRIGGER room_streams_epoch AFTER INSERT ON room_streams WHEN NEW.epoch = ''
BEGIN
    UPDATE room_streams SET epoch = lower(hex(randomblob(6))) WHERE room = NEW.room;
END;
