-- Local accounts of the embedded default (`imgorigin user add NAME`, POST /api/v1/session).
-- `name` is the identity in keys (private/<name>/...) and the token's `sub`;
-- `password_hash` is an argon2id PHC string. Times are microseconds since the Unix epoch.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
