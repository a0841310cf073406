-- Ingest (SPEC §12). `moderation`: NULL when moderation is off, else 'pending' (not yet
-- checked), 'approved' or 'flagged'; a flagged image is readable only by its owner and
-- admins. `rejected_reason`: why ingest refused an object (state 'rejected'; the object
-- was moved under `rejected/`).
ALTER TABLE images ADD COLUMN moderation TEXT;
ALTER TABLE images ADD COLUMN rejected_reason TEXT;
