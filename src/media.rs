//! The media vocabulary: which image types we know, their names, content types and file
//! extensions (one table), and recognising them from magic bytes.
//!
//! A leaf: it imports nothing from the crate, so every layer (params, pipeline, storage
//! callers, api, delivery, config) can use it without pointing up.

/// Every image type the server recognises. Not all are decoded ([`SourceFormat`]) or
/// written ([`OutputFormat`]): AVIF originals are only passed through untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
    Gif,
    Avif,
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
pub const TABLE: [TypeInfo; 5] = [
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
        } else if b.len() >= 12 && &b[4..8] == b"ftyp" && matches!(&b[8..12], b"avif" | b"avis") {
            Some(ImageType::Avif)
        } else {
            None
        }
    }
}

/// Formats we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl SourceFormat {
    pub fn image_type(self) -> ImageType {
        match self {
            SourceFormat::Jpeg => ImageType::Jpeg,
            SourceFormat::Png => ImageType::Png,
            SourceFormat::Webp => ImageType::Webp,
            SourceFormat::Gif => ImageType::Gif,
        }
    }

    pub fn from_image_type(t: ImageType) -> Option<Self> {
        Some(match t {
            ImageType::Jpeg => SourceFormat::Jpeg,
            ImageType::Png => SourceFormat::Png,
            ImageType::Webp => SourceFormat::Webp,
            ImageType::Gif => SourceFormat::Gif,
            ImageType::Avif => return None,
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

    const ALL: [ImageType; 5] = [
        ImageType::Jpeg,
        ImageType::Png,
        ImageType::Webp,
        ImageType::Gif,
        ImageType::Avif,
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
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0";
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
        assert_eq!(SourceFormat::sniff(avif), None);
        assert_eq!(ImageType::sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(ImageType::sniff(b""), None);
    }
}
