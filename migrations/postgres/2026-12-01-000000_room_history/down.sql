DROP TABLE room_events;
DROP TABLE room_streams;
