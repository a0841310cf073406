-- Keys handed out with a presigned PUT (POST /api/v1/uploads): who may register the
-- object (identity; NULL for an admin), until when the PUT URL works (expires_at,
-- microseconds), and whether it was registered (used_at). Expired rows are swept: an
-- object left at an unregistered key is deleted then.
CREATE TABLE upload_reservations (
    object_key TEXT PRIMARY KEY,
    identity TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX upload_reservations_expiry ON upload_reservations (expires_at);
