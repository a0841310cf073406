//! GIF: image descriptors with their data, graphic control and plain-text extensions (they
//! draw), the looping extension (`NETSCAPE2.0`, `ANIMEXTS1.0`) and the ICC profile
//! (`ICCRGBG1012`) are kept. Comment extensions and every other application extension
//! (XMP's `XMP DataXMP`, ImageMagick's IPTC/8BIM blocks) are left out, and so is anything
//! after the trailer. GIF has no orientation.

use super::{Builder, StripError, Stripped};

const CORRUPT: StripError = StripError("GIF");

/// Application extensions that change how the image plays or looks.
const KEPT_APPS: [&[u8; 11]; 3] = [b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"];

pub(super) fn strip(input: &[u8]) -> Result<Stripped, StripError> {
    let packed = *input.get(10).ok_or(CORRUPT)?;
    let mut pos = 13;
    if packed & 0x80 != 0 {
        pos += 3 * (1usize << ((packed & 7) + 1));
    }
    if pos > input.len() {
        return Err(CORRUPT);
    }
    let mut out = Builder::new();
    out.keep(0..pos);
    while let Some(&block) = input.get(pos) {
        match block {
            0x21 => {
                let label = *input.get(pos + 1).ok_or(CORRUPT)?;
                let end = sub_blocks_end(input, pos + 2);
                let keep = match label {
                    0xF9 | 0x01 => true,
                    0xFF => input.get(pos + 3..pos + 14).is_some_and(|id| {
                        input[pos + 2] == 11 && KEPT_APPS.iter().any(|k| &k[..] == id)
                    }),
                    _ => false,
                };
                match end {
                    Some(end) if keep => out.keep(pos..end),
                    Some(_) => out.drop(),
                    // Cut short: nothing more to read.
                    None if keep => out.keep(pos..input.len()),
                    None => out.drop(),
                }
                match end {
                    Some(end) => pos = end,
                    None => return Ok(out.finish()),
                }
            }
            0x2C => {
                let local = input.get(pos + 9).copied().unwrap_or(0);
                let mut data = pos + 10;
                if local & 0x80 != 0 {
                    data += 3 * (1usize << ((local & 7) + 1));
                }
                // LZW minimum code size, then the data sub-blocks.
                match sub_blocks_end(input, data + 1) {
                    Some(end) => {
                        out.keep(pos..end);
                        pos = end;
                    }
                    None => {
                        out.keep(pos..input.len());
                        return Ok(out.finish());
                    }
                }
            }
            0x3B => {
                out.keep(pos..pos + 1);
                if pos + 1 < input.len() {
                    out.drop();
                }
                return Ok(out.finish());
            }
            // Not a block: garbage where a block should start; decoders stop here too.
            _ => {
                out.drop();
                return Ok(out.finish());
            }
        }
    }
    Ok(out.finish())
}

/// End of a run of data sub-blocks starting at `pos`; `None` when cut short.
fn sub_blocks_end(input: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let n = usize::from(*input.get(pos)?);
        pos += 1 + n;
        if n == 0 {
            return (pos <= input.len()).then_some(pos);
        }
    }
}
