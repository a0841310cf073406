-- Portable between SQLite and PostgreSQL: BIGINT and TEXT only; times are microseconds
-- since the Unix epoch (UTC); tags are stored as ",tag1,tag2," (lowercase, no commas).
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE,
    level TEXT NOT NULL,
    owner TEXT,
    filename TEXT,
    content_type TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    tags TEXT NOT NULL,
    description TEXT,
    -- 'pending' (upload in progress), 'ready', 'deleting'; only 'ready' is visible.
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX images_newest ON images (created_at DESC, id DESC);
CREATE INDEX images_owner ON images (owner, created_at DESC, id DESC);

CREATE TABLE shares (
    id TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    object_key TEXT NOT NULL,
    params TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX shares_image ON shares (image_id);
