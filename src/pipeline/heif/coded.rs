//! The frame size the codec will allocate, read from the coded data itself: the AV1
//! sequence header (`max_frame_width/height`) or the HEVC sequence parameter set
//! (`pic_width/height_in_luma_samples`). dav1d and libde265 size their pictures from these,
//! not from the container's `ispe`, so a file whose `ispe` says 64×48 over a 4000×4000
//! bitstream passed the pixel limit and took hundreds of MB (found by fuzzing).
//!
//! Only the fields up to the size are read; every parameter set in the configuration box
//! and in the item's data counts, since a later one replaces an earlier one in the decoder.
//! The pictures in the data are counted too: an image item holds one, and the decoder
//! would decode every one it is given (a few bytes each, at up to the full size).

/// What a coded item declares.
#[derive(Debug, PartialEq)]
pub(super) struct Coded {
    /// The picture size of each parameter set (AV1 sequence header, HEVC SPS).
    pub sizes: Vec<(u32, u32)>,
    /// Pictures in the item's data: AV1 frame (header) OBUs, HEVC first slice segments.
    pub pictures: usize,
}

/// Most parameter sets looked at per item (a real item has one).
const MAX_PARAMETER_SETS: usize = 16;
/// The SPS fields up to the size fit in this many bytes (7 sub-layers of 96 bits at most).
const SPS_PREFIX: usize = 160;

/// Big-endian bit reader.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, at: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.at / 8)?;
        let b = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(b))
    }

    /// `n` ≤ 32 bits.
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        u32::try_from(v).ok()
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.at = self.at.checked_add(n)?;
        (self.at <= self.data.len() * 8).then_some(())
    }

    /// HEVC's ue(v), Exp-Golomb.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.read(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + u64::from(rest)).ok()
    }

    /// AV1's uvlc().
    fn uvlc(&mut self) -> Option<()> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
        }
        if zeros < 32 {
            self.skip(zeros)?;
        }
        Some(())
    }
}

/// The AV1 sequence headers in `av1C` (after its 4 fixed bytes) and in the item's OBUs,
/// and its frames; `None` if anything is malformed.
pub(super) fn av1(av1c: &[u8], data: &[u8]) -> Option<Coded> {
    let mut coded = Coded {
        sizes: Vec::new(),
        pictures: 0,
    };
    for (stream, in_data) in [(av1c.get(4..)?, false), (data, true)] {
        let mut rest = stream;
        while !rest.is_empty() {
            let (kind, payload, next) = obu(rest)?;
            match kind {
                1 => {
                    coded.sizes.push(av1_sequence_header(payload)?);
                    if coded.sizes.len() > MAX_PARAMETER_SETS {
                        return None;
                    }
                }
                // OBU_FRAME_HEADER, OBU_FRAME
                3 | 6 if in_data => coded.pictures += 1,
                _ => {}
            }
            rest = next;
        }
    }
    Some(coded)
}

/// One OBU: (type, payload, what follows).
fn obu(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let header = *b.first()?;
    if header & 0x80 != 0 {
        return None; // forbidden bit
    }
    let kind = (header >> 3) & 0x0f;
    let mut at = 1 + usize::from((header >> 2) & 1);
    let size = if (header >> 1) & 1 == 1 {
        let mut size: u64 = 0;
        for i in 0..8 {
            let byte = *b.get(at)?;
            at += 1;
            size |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                break;
            }
        }
        usize::try_from(size).ok()?
    } else {
        b.len().checked_sub(at)?
    };
    let end = at.checked_add(size)?;
    Some((kind, b.get(at..end)?, b.get(end..)?))
}

/// `max_frame_width_minus_1 + 1`, `max_frame_height_minus_1 + 1` (AV1 spec 5.5.1).
fn av1_sequence_header(p: &[u8]) -> Option<(u32, u32)> {
    let mut r = Bits::new(p);
    r.skip(3)?; // seq_profile
    r.skip(1)?; // still_picture
    if r.bit()? == 1 {
        // reduced_still_picture_header: seq_level_idx[0] only
        r.skip(5)?;
    } else {
        let timing_info = r.bit()? == 1;
        let mut decoder_model = false;
        let mut buffer_delay_bits = 0;
        if timing_info {
            r.skip(64)?; // num_units_in_display_tick, time_scale
            if r.bit()? == 1 {
                r.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model = r.bit()? == 1;
            if decoder_model {
                buffer_delay_bits = r.read(5)? as usize + 1;
                r.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay = r.bit()? == 1;
        let operating_points = r.read(5)? + 1;
        for _ in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            if r.read(5)? > 7 {
                r.skip(1)?; // seq_tier
            }
            if decoder_model && r.bit()? == 1 {
                r.skip(2 * buffer_delay_bits + 1)?;
            }
            if initial_display_delay && r.bit()? == 1 {
                r.skip(4)?;
            }
        }
    }
    let width_bits = r.read(4)? + 1;
    let height_bits = r.read(4)? + 1;
    let w = u64::from(r.read(width_bits)?) + 1;
    let h = u64::from(r.read(height_bits)?) + 1;
    Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))
}

/// The HEVC SPS NAL units in `hvcC`'s arrays and in the item's length-prefixed NAL units,
/// and its pictures; `None` if anything is malformed.
pub(super) fn hevc(hvcc: &[u8], data: &[u8]) -> Option<Coded> {
    let mut nals: Vec<&[u8]> = Vec::new();
    let length_size = usize::from(hvcc.get(21)? & 3) + 1;
    let arrays = *hvcc.get(22)?;
    let mut at = 23;
    for _ in 0..arrays {
        at += 1; // completeness, NAL unit type
        let count = u16::from_be_bytes([*hvcc.get(at)?, *hvcc.get(at + 1)?]);
        at += 2;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*hvcc.get(at)?, *hvcc.get(at + 1)?]));
            nals.push(hvcc.get(at + 2..at + 2 + len)?);
            at += 2 + len;
        }
    }
    let in_config = nals.len();
    let mut rest = data;
    while !rest.is_empty() {
        let mut len = 0usize;
        for &b in rest.get(..length_size)? {
            len = (len << 8) | usize::from(b);
        }
        let end = length_size.checked_add(len)?;
        nals.push(rest.get(length_size..end)?);
        rest = &rest[end..];
    }
    let mut coded = Coded {
        sizes: Vec::new(),
        pictures: 0,
    };
    for (i, nal) in nals.into_iter().enumerate() {
        let kind = (*nal.first()? >> 1) & 0x3f;
        if kind == 33 {
            coded.sizes.push(hevc_sps(&unescape(nal.get(2..)?))?);
            if coded.sizes.len() > MAX_PARAMETER_SETS {
                return None;
            }
        } else if kind <= 31 && i >= in_config && nal.get(2)? & 0x80 != 0 {
            // A VCL NAL unit whose slice begins a picture (first_slice_segment_in_pic_flag).
            coded.pictures += 1;
        }
    }
    Some(coded)
}

/// The first bytes of an RBSP: emulation-prevention bytes (00 00 03) removed.
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SPS_PREFIX);
    let mut zeros = 0;
    for &b in nal {
        if out.len() == SPS_PREFIX {
            break;
        }
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// `pic_width_in_luma_samples`, `pic_height_in_luma_samples` (H.265 7.3.2.2).
fn hevc_sps(p: &[u8]) -> Option<(u32, u32)> {
    let mut r = Bits::new(p);
    r.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = r.read(3)? as usize; // sps_max_sub_layers_minus1
    r.skip(1)?; // sps_temporal_id_nesting_flag
    // profile_tier_level: the general part is 96 bits.
    r.skip(96)?;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(sub_layers) {
        *p = (r.bit()? == 1, r.bit()? == 1);
    }
    if sub_layers > 0 {
        r.skip(2 * (8 - sub_layers))?;
    }
    for &(profile, level) in present.iter().take(sub_layers) {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    if r.ue()? == 3 {
        r.skip(1)?; // separate_colour_plane_flag
    }
    Some((r.ue()?, r.ue()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 → 0, 010 → 1, 011 → 2, 00100 → 3
        let mut r = Bits::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(
            (r.ue(), r.ue(), r.ue(), r.ue()),
            (Some(0), Some(1), Some(2), Some(3))
        );
        assert_eq!(Bits::new(&[0, 0, 0, 0, 0]).ue(), None);
    }

    #[test]
    fn av1_reduced_still_picture_header() {
        // seq_profile 0, still 1, reduced 1, level 0; 12-bit fields for 4000 × 3000.
        let mut bits = String::from("000" /* profile */);
        bits += "1"; // still_picture
        bits += "1"; // reduced_still_picture_header
        bits += "00000"; // seq_level_idx
        bits += "1011"; // frame_width_bits_minus_1 = 11
        bits += "1011";
        bits += &format!("{:012b}", 3999);
        bits += &format!("{:012b}", 2999);
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let payload: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect();
        let mut data = vec![0b0000_1010, payload.len() as u8];
        data.extend_from_slice(&payload);
        // Then a frame OBU (type 6) of 3 bytes.
        data.extend_from_slice(&[0b0011_0010, 3, 0, 0, 0]);
        let coded = av1(&[0x81, 0, 0, 0], &data).unwrap();
        assert_eq!((coded.sizes, coded.pictures), (vec![(4000, 3000)], 1));
        // A truncated OBU is malformed.
        assert_eq!(av1(&[0x81, 0, 0, 0], &data[..data.len() - 1]), None);
        // Two frames are two pictures.
        data.extend_from_slice(&[0b0011_0010, 3, 0, 0, 0]);
        assert_eq!(av1(&[0x81, 0, 0, 0], &data).unwrap().pictures, 2);
    }

    #[test]
    fn hevc_pictures_are_first_slice_segments() {
        // hvcC with no arrays and 4-byte lengths; data: two slices of one IDR picture (type
        // 19: first_slice_segment_in_pic_flag set, then clear), then a second picture.
        let mut hvcc = vec![0u8; 23];
        hvcc[21] = 3;
        let nal = |first: bool| {
            let mut n = vec![0, 0, 0, 3, 19 << 1, 1];
            n.push(if first { 0x80 } else { 0 });
            n
        };
        let mut data = [nal(true), nal(false)].concat();
        assert_eq!(hevc(&hvcc, &data).unwrap().pictures, 1);
        data.extend(nal(true));
        assert_eq!(hevc(&hvcc, &data).unwrap().pictures, 2);
        // A length past the end is malformed.
        data.extend_from_slice(&[0, 0, 0, 9, 1]);
        assert_eq!(hevc(&hvcc, &data), None);
    }

    #[test]
    fn emulation_prevention_removed() {
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3, 0]), vec![0, 0, 1, 0, 0, 0]);
    }
}
