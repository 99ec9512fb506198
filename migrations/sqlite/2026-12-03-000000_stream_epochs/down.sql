DROP TRIGGER room_streams_epoch;
DROP TRIGGER providers_epoch;
ALTER TABLE room_streams DROP COLUMN epoch;
ALTER TABLE providers DROP COLUMN epoch;
