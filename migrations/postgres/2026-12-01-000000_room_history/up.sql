-- Rooms with history (EVENTIDE_HISTORY_ROOMS): each room's stream position, bumped by
-- exactly 1 per emitted event.
CREATE TABLE room_streams (
    room    TEXT   PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL DEFAULT 0
);

-- Their change log: the exact frame sent for each version, replayed with `since`.
CREATE TABLE room_events (
    room       TEXT      NOT NULL,
    version    BIGINT    NOT NULL,
    frame      TEXT      NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (room, version)
);
