//! `imgorigin-quality REFERENCE.png CANDIDATE.png...`: for each candidate (decoded to PNG
//! by the caller, so any output format can be scored), prints `<score> <path>`, the SSIMULACRA2 score of the candidate against the
//! reference resized to the candidate's exact dimensions.
//!
//! The reference is the full-resolution original, already oriented and in sRGB (made by
//! libvips in scripts/bench-quality). It is downscaled here with the `image` crate's
//! Lanczos3 from the full decode: no shrink-on-load, and a resampler that is neither ours
//! (fast_image_resize) nor the peers' (libvips), so it favours no server.

use std::collections::HashMap;
use std::process::ExitCode;

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use ssimulacra2::{ColorPrimaries, Rgb, TransferCharacteristic, compute_frame_ssimulacra2};

fn to_frame(img: &RgbImage) -> Result<Rgb, String> {
    let data = img
        .pixels()
        .map(|p| p.0.map(|c| f32::from(c) / 255.0))
        .collect();
    Rgb::new(
        data,
        img.width() as usize,
        img.height() as usize,
        TransferCharacteristic::SRGB,
        ColorPrimaries::BT709,
    )
    .map_err(|e| e.to_string())
}

fn open(path: &str) -> Result<DynamicImage, String> {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("{path}: {e}"))?
        .decode()
        .map_err(|e| format!("{path}: {e}"))
}

/// Alpha is composited onto white, as a browser shows it on a white page.
fn flatten(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u32::from(p[3]);
        image::Rgb([0, 1, 2].map(|i| ((u32::from(p[i]) * a + 255 * (255 - a) + 127) / 255) as u8))
    })
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (reference, candidates) = args
        .split_first()
        .ok_or("usage: imgorigin-quality REFERENCE CANDIDATE...")?;
    let reference = open(reference)?;
    // Candidates of one size (the same URL from several servers) share one downscale.
    let mut sized: HashMap<(u32, u32), Rgb> = HashMap::new();
    for path in candidates {
        let cand = flatten(open(path)?);
        let dims = (cand.width(), cand.height());
        if !sized.contains_key(&dims) {
            let r = flatten(reference.resize_exact(dims.0, dims.1, FilterType::Lanczos3));
            sized.insert(dims, to_frame(&r)?);
        }
        let score = compute_frame_ssimulacra2(sized[&dims].clone(), to_frame(&cand)?)
            .map_err(|e| format!("{path}: {e}"))?;
        println!("{score:.3} {path}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imgorigin-quality: {e}");
            ExitCode::FAILURE
        }
    }
}
