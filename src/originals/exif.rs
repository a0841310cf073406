//! The one EXIF block a stripped copy may carry: IFD0 with the Orientation tag only.

/// EXIF orientation 1..=8 of a TIFF-structured EXIF payload; 1 when absent or invalid.
/// Read the way the decoders read it, so the stripped copy shows what the pipeline shows.
pub(super) fn orientation(tiff: &[u8]) -> u8 {
    image::metadata::Orientation::from_exif_chunk(tiff).map_or(1, |o| o.to_exif())
}

/// A big-endian TIFF header and one IFD with one entry: Orientation (0x0112, SHORT).
/// 26 bytes; nothing else about the camera, the time or the place survives.
pub(super) fn orientation_only(orientation: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(26);
    t.extend_from_slice(b"MM\0\x2a"); // byte order, magic
    t.extend_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
    t.extend_from_slice(&1u16.to_be_bytes()); // one entry
    t.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    t.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    t.extend_from_slice(&1u32.to_be_bytes()); // count
    t.extend_from_slice(&u16::from(orientation).to_be_bytes()); // value, left-justified
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&0u32.to_be_bytes()); // no IFD1 (and so no thumbnail)
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_block_reads_back() {
        for o in 1..=8 {
            assert_eq!(orientation(&orientation_only(o)), o);
        }
        assert_eq!(orientation_only(6).len(), 26);
        assert_eq!(orientation(b"junk"), 1);
    }
}
