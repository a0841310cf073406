-- Image facts (SPEC §10) as JSON text: format, displayed size, orientation, animation,
-- alpha, date taken, camera, GPS, dominant colour, BlurHash. NULL for records stored
-- before facts existed; those are computed on first read (record GET, `?fm=json`).
ALTER TABLE images ADD COLUMN facts TEXT;
