-- Each provider's availability stream position: bumped by exactly 1 per change.
CREATE TABLE providers (
    id      BIGINT PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE slots (
    id          BIGSERIAL PRIMARY KEY,
    provider_id BIGINT    NOT NULL,
    starts_at   TIMESTAMP NOT NULL,
    ends_at     TIMESTAMP NOT NULL,
    status      TEXT      NOT NULL DEFAULT 'available',
    note        TEXT,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);
CREATE INDEX slots_by_provider_start ON slots (provider_id, starts_at);

-- The change log: the exact frame sent for each version, replayed by `joinRoom` with `since`.
CREATE TABLE availability_changes (
    provider_id BIGINT    NOT NULL,
    version     BIGINT    NOT NULL,
    action      TEXT      NOT NULL,
    frame       TEXT      NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (provider_id, version)
);
