ALTER TABLE room_streams DROP COLUMN epoch;
ALTER TABLE providers DROP COLUMN epoch;
