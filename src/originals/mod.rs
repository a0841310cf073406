//! What a request without parameters gets (SPEC §10): the stored bytes, or the stored bytes
//! with EXIF, XMP, IPTC, comments and GPS removed *without re-encoding*. Only whole
//! metadata containers are left out (JPEG segments, PNG chunks, WebP chunks, GIF
//! extensions); the coded image data is passed through byte for byte, so the decoded
//! pixels are identical. The ICC profile stays, and so does the orientation: as a minimal
//! EXIF block holding nothing but the Orientation tag.
//!
//! [`strip`] only reads the container structure (marker, chunk and block headers; for JPEG
//! also a `memchr` over the entropy-coded data to find EOI) and answers with a [`Layout`]:
//! ranges of the stored bytes plus a few small new pieces. The response body is then
//! streamed as slices of the original's `Bytes`: a stripped 12 MP photo costs no copy of
//! its 4 MB, and the layout (a few hundred bytes) is what the cache keeps.
//!
//! HEIC/HEIF/AVIF (ISOBMFF): removing Exif/XMP items is not written yet. [`strip`] says
//! [`Stripped::Unsupported`] for such a file when it carries metadata items (and
//! `Unchanged` when it has none), and delivery never serves those bytes to a caller who
//! must get a stripped copy (see `delivery::serve_original`). The hook is
//! `isobmff::strip`.

mod exif;
mod gif;
mod isobmff;
mod jpeg;
mod png;
mod webp;

use crate::media::ImageType;
use bytes::Bytes;
use std::ops::Range;

/// `originals.metadata`: who gets the stored bytes of a request without parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetadataPolicy {
    /// The owner of the key and admins get the stored bytes; everyone else a stripped copy.
    #[default]
    Owner,
    /// Everyone gets the stripped copy.
    Strip,
    /// Everyone gets the stored bytes.
    Keep,
}

impl MetadataPolicy {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(MetadataPolicy::Owner),
            "strip" => Some(MetadataPolicy::Strip),
            "keep" => Some(MetadataPolicy::Keep),
            _ => None,
        }
    }
}

/// What [`strip`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stripped {
    /// Nothing to remove: the stored bytes are the stripped copy (and keep their ETag).
    Unchanged,
    /// The stripped copy, as ranges of the stored bytes and new pieces.
    Layout(Layout),
    /// The file carries metadata that cannot be removed from this format (yet); the label
    /// names the format.
    Unsupported(&'static str),
}

/// Why a file could not be walked. Its metadata cannot be told apart from its image data,
/// so it is not served to callers who must get a stripped copy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt or truncated {0} data")]
pub struct StripError(pub &'static str);

/// One piece of a stripped copy.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// These bytes of the stored original.
    Keep(Range<usize>),
    /// New bytes (a rewritten header, the minimal EXIF block).
    New(Bytes),
}

/// A stripped copy of one original: what to send, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    parts: Vec<Part>,
    len: usize,
}

impl Layout {
    /// Length of the stripped copy in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the layout itself (for cache weights), not the image data it refers to.
    pub fn footprint(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Keep(_) => std::mem::size_of::<Part>(),
                Part::New(b) => std::mem::size_of::<Part>() + b.len(),
            })
            .sum()
    }

    /// Piece `i` of the stripped copy: a slice of `original` (no copy) or a new piece;
    /// `None` past the last. `original` must be the bytes the layout was made from.
    pub fn chunk(&self, i: usize, original: &Bytes) -> Option<Bytes> {
        self.parts.get(i).map(|p| match p {
            Part::Keep(r) => original.slice(r.clone()),
            Part::New(b) => b.clone(),
        })
    }

    /// Every piece, in order (see [`Layout::chunk`]).
    pub fn chunks<'a>(&'a self, original: &'a Bytes) -> impl Iterator<Item = Bytes> + 'a {
        (0..self.parts.len()).filter_map(move |i| self.chunk(i, original))
    }

    /// The stripped copy in one buffer (tests, benchmarks).
    pub fn to_vec(&self, original: &Bytes) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for c in self.chunks(original) {
            out.extend_from_slice(&c);
        }
        out
    }
}

/// Collects the parts of a stripped copy; `changed` records whether anything differs from
/// the stored bytes.
struct Builder {
    parts: Vec<Part>,
    len: usize,
    changed: bool,
}

impl Builder {
    fn new() -> Self {
        Builder {
            parts: Vec::new(),
            len: 0,
            changed: false,
        }
    }

    /// Keeps `r` of the input, merged with the previous kept range when adjacent.
    fn keep(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        self.len += r.len();
        if let Some(Part::Keep(last)) = self.parts.last_mut()
            && last.end == r.start
        {
            last.end = r.end;
            return;
        }
        self.parts.push(Part::Keep(r));
    }

    /// Leaves something out.
    fn drop(&mut self) {
        self.changed = true;
    }

    /// New bytes in place of something left out.
    fn new_bytes(&mut self, b: Vec<u8>) {
        self.changed = true;
        self.len += b.len();
        self.parts.push(Part::New(Bytes::from(b)));
    }

    fn finish(self) -> Stripped {
        if self.changed {
            Stripped::Layout(Layout {
                parts: self.parts,
                len: self.len,
            })
        } else {
            Stripped::Unchanged
        }
    }
}

/// The stripped copy of `input`, by its magic bytes. Types we do not recognise are not
/// images and are never served (delivery refuses them before this).
pub fn strip(input: &[u8]) -> Result<Stripped, StripError> {
    match ImageType::sniff(input) {
        Some(ImageType::Jpeg) => jpeg::strip(input),
        Some(ImageType::Png) => png::strip(input),
        Some(ImageType::Webp) => webp::strip(input),
        Some(ImageType::Gif) => gif::strip(input),
        Some(t @ (ImageType::Avif | ImageType::Heic | ImageType::Heif)) => {
            isobmff::strip(input, t.label())
        }
        None => Err(StripError("unknown")),
    }
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(usize::from(u16::from_be_bytes([s[0], s[1]])))
}

fn be32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(4)?)?;
    usize::try_from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok()
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(4)?)?;
    usize::try_from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok()
}

#[cfg(test)]
mod tests;
