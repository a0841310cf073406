//! The media vocabulary: which image types we know, their names, content types and file
//! extensions (one table), and recognising them from magic bytes.
//!
//! A leaf: it imports nothing from the crate, so every layer (params, pipeline, storage
//! callers, api, delivery, config) can use it without pointing up.

/// Every image type the server recognises. Not all are written ([`OutputFormat`]): HEIC
/// and HEIF are read only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
    Gif,
    Avif,
    Heic,
    Heif,
}

/// One row of [`TABLE`].
#[derive(Debug)]
pub struct TypeInfo {
    pub ty: ImageType,
    /// The lower-case name (`fm=`, `format.default`).
    pub name: &'static str,
    /// Other names accepted where the documentation says so (`jpg` in the configuration).
    pub name_aliases: &'static [&'static str],
    /// For messages: "JPEG".
    pub label: &'static str,
    pub content_type: &'static str,
    /// Non-standard content types clients send for the same thing.
    pub content_type_aliases: &'static [&'static str],
    /// The file extension (without the dot) of stored originals.
    pub ext: &'static str,
}

/// The one table of names, content types and extensions.
pub const TABLE: [TypeInfo; 7] = [
    TypeInfo {
        ty: ImageType::Jpeg,
        name: "jpeg",
        name_aliases: &["jpg"],
        label: "JPEG",
        content_type: "image/jpeg",
        content_type_aliases: &["image/jpg"],
        ext: "jpg",
    },
    TypeInfo {
        ty: ImageType::Png,
        name: "png",
        name_aliases: &[],
        label: "PNG",
        content_type: "image/png",
        content_type_aliases: &[],
        ext: "png",
    },
    TypeInfo {
        ty: ImageType::Webp,
        name: "webp",
        name_aliases: &[],
        label: "WebP",
        content_type: "image/webp",
        content_type_aliases: &[],
        ext: "webp",
    },
    TypeInfo {
        ty: ImageType::Gif,
        name: "gif",
        name_aliases: &[],
        label: "GIF",
        content_type: "image/gif",
        content_type_aliases: &[],
        ext: "gif",
    },
    TypeInfo {
        ty: ImageType::Avif,
        name: "avif",
        name_aliases: &[],
        label: "AVIF",
        content_type: "image/avif",
        content_type_aliases: &[],
        ext: "avif",
    },
    TypeInfo {
        ty: ImageType::Heic,
        name: "heic",
        name_aliases: &[],
        label: "HEIC",
        content_type: "image/heic",
        content_type_aliases: &["image/heic-sequence"],
        ext: "heic",
    },
    TypeInfo {
        ty: ImageType::Heif,
        name: "heif",
        name_aliases: &[],
        label: "HEIF",
        content_type: "image/heif",
        content_type_aliases: &["image/heif-sequence"],
        ext: "heif",
    },
];

impl ImageType {
    /// This type's row of [`TABLE`].
    pub fn info(self) -> &'static TypeInfo {
        // The table is in declaration order (checked by a test).
        &TABLE[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn label(self) -> &'static str {
        self.info().label
    }

    pub fn content_type(self) -> &'static str {
        self.info().content_type
    }

    pub fn ext(self) -> &'static str {
        self.info().ext
    }

    /// By exact name only (`jpeg`, not `jpg`).
    pub fn from_name(s: &str) -> Option<Self> {
        TABLE.iter().find(|r| r.name == s).map(|r| r.ty)
    }

    /// By name or alias (`jpeg` or `jpg`).
    pub fn from_name_or_alias(s: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|r| r.name == s || r.name_aliases.contains(&s))
            .map(|r| r.ty)
    }

    /// By content type, ASCII case-insensitive, aliases included (`image/jpg`).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.to_ascii_lowercase();
        TABLE
            .iter()
            .find(|r| r.content_type == ct || r.content_type_aliases.contains(&ct.as_str()))
            .map(|r| r.ty)
    }

    /// Recognises the type from the first bytes of a file.
    pub fn sniff(b: &[u8]) -> Option<Self> {
        if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageType::Jpeg)
        } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageType::Png)
        } else if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
            Some(ImageType::Webp)
        } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
            Some(ImageType::Gif)
        } else {
            heif_brand(b)
        }
    }
}

/// A HEIF container by its `ftyp` brands: AVIF when an AV1 brand is listed (major or
/// compatible), HEIC for the HEVC brands, HEIF for the generic image brands alone.
fn heif_brand(b: &[u8]) -> Option<ImageType> {
    let size = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    if b.get(4..8)? != b"ftyp" || size < 16 {
        return None;
    }
    // Brands up to the box end or what we were given (a prefix of the file may do).
    let ftyp = &b[8..size.min(b.len())];
    let brands = std::iter::once(ftyp.get(0..4)?).chain(ftyp.get(8..)?.chunks_exact(4));
    let (mut avif, mut heic, mut heif) = (false, false, false);
    for brand in brands {
        match brand {
            b"avif" | b"avis" => avif = true,
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" => heic = true,
            b"mif1" | b"msf1" | b"mif2" => heif = true,
            _ => {}
        }
    }
    if avif {
        Some(ImageType::Avif)
    } else if heic {
        Some(ImageType::Heic)
    } else {
        heif.then_some(ImageType::Heif)
    }
}

/// Formats we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    Heic,
    Heif,
    Avif,
}

impl SourceFormat {
    pub fn image_type(self) -> ImageType {
        match self {
            SourceFormat::Jpeg => ImageType::Jpeg,
            SourceFormat::Png => ImageType::Png,
            SourceFormat::Webp => ImageType::Webp,
            SourceFormat::Gif => ImageType::Gif,
            SourceFormat::Heic => ImageType::Heic,
            SourceFormat::Heif => ImageType::Heif,
            SourceFormat::Avif => ImageType::Avif,
        }
    }

    pub fn from_image_type(t: ImageType) -> Option<Self> {
        Some(match t {
            ImageType::Jpeg => SourceFormat::Jpeg,
            ImageType::Png => SourceFormat::Png,
            ImageType::Webp => SourceFormat::Webp,
            ImageType::Gif => SourceFormat::Gif,
            ImageType::Heic => SourceFormat::Heic,
            ImageType::Heif => SourceFormat::Heif,
            ImageType::Avif => SourceFormat::Avif,
        })
    }

    /// The human name for messages ("JPEG"), as the pipeline's errors use it.
    pub fn name(self) -> &'static str {
        self.image_type().label()
    }

    pub fn content_type(self) -> &'static str {
        self.image_type().content_type()
    }

    pub fn ext(self) -> &'static str {
        self.image_type().ext()
    }

    /// HEIF containers (HEIC, HEIF, AVIF), decoded by libheif.
    pub fn is_heif(self) -> bool {
        matches!(
            self,
            SourceFormat::Heic | SourceFormat::Heif | SourceFormat::Avif
        )
    }

    /// A format we decode, from the magic bytes.
    pub fn sniff(b: &[u8]) -> Option<Self> {
        ImageType::sniff(b).and_then(Self::from_image_type)
    }
}

/// Encodings we write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Jpeg,
    Png,
    Webp,
    Avif,
    Gif,
}

impl OutputFormat {
    pub fn image_type(self) -> ImageType {
        match self {
            OutputFormat::Jpeg => ImageType::Jpeg,
            OutputFormat::Png => ImageType::Png,
            OutputFormat::Webp => ImageType::Webp,
            OutputFormat::Avif => ImageType::Avif,
            OutputFormat::Gif => ImageType::Gif,
        }
    }

    pub fn from_image_type(t: ImageType) -> Option<Self> {
        Some(match t {
            ImageType::Jpeg => OutputFormat::Jpeg,
            ImageType::Png => OutputFormat::Png,
            ImageType::Webp => OutputFormat::Webp,
            ImageType::Avif => OutputFormat::Avif,
            ImageType::Gif => OutputFormat::Gif,
            ImageType::Heic | ImageType::Heif => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        self.image_type().content_type()
    }

    /// The lower-case name (`jpeg`): `fm=` values and the canonical transform text.
    pub fn name(self) -> &'static str {
        self.image_type().name()
    }

    /// By exact name (`fm=`: `jpeg`, `png`, `webp`, `avif`, `gif`).
    pub fn from_name(s: &str) -> Option<Self> {
        ImageType::from_name(s).and_then(Self::from_image_type)
    }

    /// By name or alias (`format.default` also takes `jpg`).
    pub fn from_name_or_alias(s: &str) -> Option<Self> {
        ImageType::from_name_or_alias(s).and_then(Self::from_image_type)
    }

    pub fn supports_alpha(self) -> bool {
        !matches!(self, OutputFormat::Jpeg)
    }

    /// Whether an animated source keeps its animation in this format (SPEC §9).
    pub fn supports_animation(self) -> bool {
        matches!(self, OutputFormat::Gif | OutputFormat::Webp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ImageType; 7] = [
        ImageType::Jpeg,
        ImageType::Png,
        ImageType::Webp,
        ImageType::Gif,
        ImageType::Avif,
        ImageType::Heic,
        ImageType::Heif,
    ];

    #[test]
    fn table_rows_follow_the_enum() {
        for t in ALL {
            assert_eq!(t.info().ty, t);
        }
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!(OutputFormat::from_name("jpeg"), Some(OutputFormat::Jpeg));
        assert_eq!(OutputFormat::from_name("jpg"), None);
        assert_eq!(
            OutputFormat::from_name_or_alias("jpg"),
            Some(OutputFormat::Jpeg)
        );
        assert_eq!(OutputFormat::from_name("gif"), Some(OutputFormat::Gif));
        assert_eq!(OutputFormat::from_name("JPEG"), None);
        for f in [
            OutputFormat::Jpeg,
            OutputFormat::Png,
            OutputFormat::Webp,
            OutputFormat::Avif,
            OutputFormat::Gif,
        ] {
            assert_eq!(OutputFormat::from_name(f.name()), Some(f));
        }
        assert_eq!(SourceFormat::Webp.name(), "WebP");
        assert_eq!(SourceFormat::Jpeg.ext(), "jpg");
        assert_eq!(SourceFormat::Gif.content_type(), "image/gif");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            ImageType::from_content_type("IMAGE/JPG"),
            Some(ImageType::Jpeg)
        );
        assert_eq!(
            ImageType::from_content_type("image/webp"),
            Some(ImageType::Webp)
        );
        assert_eq!(ImageType::from_content_type("image/tiff"), None);
        for t in ALL {
            assert_eq!(ImageType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn sniffing() {
        let avif = b"\0\0\0\x18ftypavif\0\0\0\0mif1miaf";
        // An AVIF whose major brand is the generic one.
        let avif_compat = b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif";
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        let heif = b"\0\0\0\x14ftypmif1\0\0\0\0mif1";
        assert_eq!(
            ImageType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageType::Jpeg)
        );
        assert_eq!(
            ImageType::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageType::Png)
        );
        assert_eq!(
            ImageType::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageType::Webp)
        );
        assert_eq!(ImageType::sniff(b"GIF89a.."), Some(ImageType::Gif));
        assert_eq!(ImageType::sniff(avif), Some(ImageType::Avif));
        assert_eq!(ImageType::sniff(avif_compat), Some(ImageType::Avif));
        assert_eq!(ImageType::sniff(heic), Some(ImageType::Heic));
        assert_eq!(ImageType::sniff(heif), Some(ImageType::Heif));
        assert_eq!(SourceFormat::sniff(heic), Some(SourceFormat::Heic));
        // An MP4 video is an ISO file too, but not an image.
        assert_eq!(
            ImageType::sniff(b"\0\0\0\x18ftypisom\0\0\0\0isommp41"),
            None
        );
        assert_eq!(ImageType::sniff(b"\0\0\0\x08ftyp"), None);
        assert_eq!(ImageType::sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(ImageType::sniff(b""), None);
    }
}
