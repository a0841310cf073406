//! Image facts (SPEC §10): what a gallery needs to lay out and preview an image before
//! loading it. Computed once per original by `pipeline::facts`, stored with the record
//! (`metadata`, as JSON), shown by the API and by `GET /{key}?fm=json`.
//!
//! GPS is the one fact not everyone may see: [`Facts::view`] leaves it out unless the
//! caller is the owner or an admin.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// `jpeg`, `png`, `webp`, `gif`, ... (`fm=` names).
    pub format: String,
    /// Size as shown, after EXIF orientation (swapped for orientations 5..=8).
    pub display_width: u32,
    pub display_height: u32,
    /// EXIF orientation 1..=8; 1 when the image has none.
    pub orientation: u8,
    pub animated: bool,
    pub frames: u32,
    pub has_alpha: bool,
    /// EXIF DateTimeOriginal as RFC 3339, with OffsetTimeOriginal when EXIF has it
    /// (`2024-05-06T07:08:09+02:00`), else the local time without offset.
    pub taken_at: Option<String>,
    pub camera: Option<Camera>,
    pub gps: Option<Gps>,
    /// `#rrggbb`.
    pub dominant_color: Option<String>,
    /// 4×3 components, of the image as shown (oriented; transparency over white).
    pub blurhash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Camera {
    pub make: Option<String>,
    pub model: Option<String>,
}

/// Degrees, north and east positive.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gps {
    pub lat: f64,
    pub lon: f64,
}

impl Facts {
    /// Stored form (the record's `facts` column).
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and options: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From the stored form; `None` for text this version cannot read (then the facts are
    /// computed again).
    pub fn from_json(s: &str) -> Option<Facts> {
        serde_json::from_str(s).ok()
    }

    /// As shown to a caller: `gps` only with `show_gps` (owner, admin).
    pub fn view(&self, show_gps: bool) -> FactsView<'_> {
        FactsView {
            format: Some(&self.format),
            display_width: Some(self.display_width),
            display_height: Some(self.display_height),
            orientation: Some(self.orientation),
            animated: Some(self.animated),
            frames: Some(self.frames),
            has_alpha: Some(self.has_alpha),
            taken_at: self.taken_at.as_deref(),
            camera: self.camera.as_ref(),
            gps: self.gps.filter(|_| show_gps),
            dominant_color: self.dominant_color.as_deref(),
            blurhash: self.blurhash.as_deref(),
        }
    }
}

/// The facts as JSON fields; every field `null` when they are not known (yet).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FactsView<'a> {
    pub format: Option<&'a str>,
    pub display_width: Option<u32>,
    pub display_height: Option<u32>,
    pub orientation: Option<u8>,
    pub animated: Option<bool>,
    pub frames: Option<u32>,
    pub has_alpha: Option<bool>,
    pub taken_at: Option<&'a str>,
    pub camera: Option<&'a Camera>,
    pub gps: Option<Gps>,
    pub dominant_color: Option<&'a str>,
    pub blurhash: Option<&'a str>,
}

impl<'a> FactsView<'a> {
    /// Of facts that may be missing (a record from before they existed).
    pub fn of(facts: Option<&'a Facts>, show_gps: bool) -> Self {
        facts.map(|f| f.view(show_gps)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Facts {
        Facts {
            format: "jpeg".into(),
            display_width: 3,
            display_height: 4,
            orientation: 6,
            animated: false,
            frames: 1,
            has_alpha: false,
            taken_at: Some("2024-05-06T07:08:09+02:00".into()),
            camera: Some(Camera {
                make: Some("Cam".into()),
                model: None,
            }),
            gps: Some(Gps {
                lat: 48.8584,
                lon: -2.5,
            }),
            dominant_color: Some("#102030".into()),
            blurhash: Some("LEHV6nWB2yk8pyo0adR*.7kCMdnj".into()),
        }
    }

    #[test]
    fn round_trip_and_gps_only_when_shown() {
        let f = sample();
        assert_eq!(Facts::from_json(&f.to_json()), Some(f.clone()));
        let hidden = serde_json::to_value(f.view(false)).unwrap();
        assert!(hidden["gps"].is_null());
        assert_eq!(hidden["camera"]["make"], "Cam");
        let shown = serde_json::to_value(f.view(true)).unwrap();
        assert_eq!(shown["gps"]["lon"], -2.5);
        let none = serde_json::to_value(FactsView::of(None, true)).unwrap();
        assert!(none["display_width"].is_null() && none["gps"].is_null());
        assert_eq!(Facts::from_json("{\"format\":1}"), None);
    }
}
