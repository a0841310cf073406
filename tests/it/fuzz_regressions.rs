//! Every input a fuzz run found a crash with (`tests/fixtures/fuzz-regressions/<target>/`,
//! copied there by `scripts/fuzz`), and the fuzz seeds, replayed through the fuzz targets'
//! own bodies (`imgorigin::fuzzing`): CI checks them without cargo-fuzz (docs/fuzzing.md).

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str, file: &Path) {
    let run = imgorigin::fuzzing::target(target)
        .unwrap_or_else(|| panic!("{}: no fuzz target {target}", file.display()));
    let data = std::fs::read(file).unwrap();
    if std::panic::catch_unwind(|| run(&data)).is_err() {
        panic!("fuzz target {target} panics on {}", file.display());
    }
}

/// Each committed crash input, through the target that found it.
#[test]
fn fuzz_crash_inputs_no_longer_crash() {
    let dir = Path::new(ROOT).join("tests/fixtures/fuzz-regressions");
    let mut n = 0;
    for target_dir in std::fs::read_dir(&dir).unwrap() {
        let target_dir = target_dir.unwrap().path();
        let target = target_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        for f in files(&target_dir) {
            replay(&target, &f);
            n += 1;
        }
    }
    assert!(n > 0, "no crash inputs under {}", dir.display());
}

/// The seeds of every target (what `scripts/fuzz` starts from) pass the targets' checks:
/// a short run of each target's assertions on known-good inputs.
#[test]
fn fuzz_seeds_pass_every_target() {
    let fixtures = files(&Path::new(ROOT).join("tests/fixtures"));
    for (target, _) in imgorigin::fuzzing::TARGETS {
        let mut inputs = files(&Path::new(ROOT).join("fuzz/seeds").join(target));
        if !["params", "cloudfront_policy", "cloudfront_cookies", "key"].contains(target) {
            for seeds in ["heif", "exif"] {
                inputs.extend(files(&Path::new(ROOT).join("fuzz/seeds").join(seeds)));
            }
            inputs.extend(fixtures.iter().cloned());
        }
        assert!(!inputs.is_empty(), "{target}: no seeds");
        for f in &inputs {
            replay(target, f);
        }
    }
}

/// Deterministic mutations of each target's small seeds (bit flips, boundary and small
/// values, truncations, cut and duplicated spans), through every target: the smoke run of
/// `cargo test`, without the instrumented build `scripts/fuzz` needs. Blind (no coverage
/// feedback), so it guards against gross regressions only; it did not find the empty
/// `pitm` panic in 5,000 mutants per target, which libFuzzer found in seconds. A failing
/// mutant is written out so it can join the regressions.
#[test]
fn fuzz_smoke_mutations_of_every_seed() {
    const PER_TARGET: usize = 1000;
    let fixtures = files(&Path::new(ROOT).join("tests/fixtures"));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*: reproducible without a dependency.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for (target, run) in imgorigin::fuzzing::TARGETS {
        let mut seeds = files(&Path::new(ROOT).join("fuzz/seeds").join(target));
        if !["params", "cloudfront_policy", "cloudfront_cookies", "key"].contains(target) {
            seeds.extend(files(&Path::new(ROOT).join("fuzz/seeds/heif")));
            seeds.extend(fixtures.iter().cloned());
        }
        // Small seeds only: mutants of a large photo cost a full decode each.
        let seeds: Vec<Vec<u8>> = seeds
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .filter(|d| !d.is_empty() && d.len() <= 64 * 1024)
            .collect();
        assert!(!seeds.is_empty(), "{target}: no small seeds");
        for i in 0..PER_TARGET {
            let mut data = seeds[i % seeds.len()].clone();
            for _ in 0..1 + next() % 4 {
                mutate(&mut data, &mut next);
            }
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                let out = std::env::temp_dir().join(format!("fuzz-smoke-{target}-{i}"));
                std::fs::write(&out, &data).unwrap();
                panic!(
                    "fuzz target {target} panics on a mutant, written to {}",
                    out.display()
                );
            }
        }
    }
}

fn mutate(data: &mut Vec<u8>, next: &mut impl FnMut() -> u64) {
    if data.is_empty() {
        data.push(next() as u8);
        return;
    }
    let len = data.len();
    let at = (next() % len as u64) as usize;
    match next() % 7 {
        0 => data[at] ^= 1 << (next() % 8),
        1 => data[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][(next() % 5) as usize],
        // A small value: a short box or string length.
        5 => data[at] = (next() % 17) as u8,
        2 => data.truncate(at),
        3 => {
            // A 32-bit boundary value where a box size or a count might be.
            let v = [0u32, 1, 0x7fff_ffff, 0xffff_ffff, 0x1000_0000][(next() % 5) as usize];
            for (k, b) in v.to_be_bytes().iter().enumerate() {
                if at + k < len {
                    data[at + k] = *b;
                }
            }
        }
        4 => {
            let end = (at + 1 + (next() % 64) as usize).min(len);
            data.drain(at..end);
        }
        _ => {
            let end = (at + 1 + (next() % 64) as usize).min(len);
            let span = data[at..end].to_vec();
            data.splice(at..at, span);
        }
    }
}

/// A PNG whose PLTE length is not a multiple of 3 (found by `decode_png` and `exif`; png
/// 0.18.1 panics on it, image-rs/image-png#694) is refused as corrupt before decoding, and a
/// valid palette PNG still decodes.
#[test]
fn png_with_a_partial_palette_entry_is_corrupt() {
    let dir = Path::new(ROOT).join("tests/fixtures/fuzz-regressions/decode_png");
    let bad = std::fs::read(dir.join("crash-18e4d4d93392e8bbeb7194216330418aad371428")).unwrap();
    assert!(matches!(
        imgorigin::pipeline::check(&bad, 1 << 20),
        Err(imgorigin::pipeline::PipelineError::Corrupt(_))
    ));
    // The same file with its PLTE cut to four whole entries (12 bytes, CRC recomputed).
    let mut good = bad.clone();
    let plte = good.windows(4).position(|w| w == b"PLTE").unwrap() - 4;
    good[plte + 3] = 12;
    good.remove(plte + 8 + 12);
    let crc = crc32fast::hash(&good[plte + 4..plte + 8 + 12]);
    good[plte + 8 + 12..plte + 12 + 12].copy_from_slice(&crc.to_be_bytes());
    let info = imgorigin::pipeline::probe(&good).unwrap();
    assert_eq!((info.width, info.height), (185, 48));
}

/// An AVIF whose primary item is an overlay (`iovl`) with a 64×48 `ispe` but a 29184×26725
/// canvas (found by `decode_heif`: libheif allocated the canvas, 2.3 GB, before finding it
/// has no layers) is corrupt from its header; with a layer, the canvas counts against the
/// pixel limit, before libheif sees the file.
#[test]
fn heif_overlay_canvas_counts_against_the_pixel_limit() {
    let file = Path::new(ROOT).join(
        "tests/fixtures/fuzz-regressions/decode_heif/oom-ddf1a7b71abd4c4bf68d369e6ca9fadd7bb25493",
    );
    let data = std::fs::read(file).unwrap();
    assert!(matches!(
        imgorigin::pipeline::probe(&data),
        Err(imgorigin::pipeline::PipelineError::Corrupt(_))
    ));
    // Its `iref` turned from "item 2 is the alpha of item 1" into "item 1 (the overlay)
    // shows item 2 (the 64×48 AV1 image)".
    let mut layered = data.clone();
    assert_eq!(&layered[0x1aa..0x1b4], b"auxl\0\x02\0\x01\0\x01");
    layered[0x1aa..0x1b4].copy_from_slice(b"dimg\0\x01\0\x01\0\x02");
    // Item 2's data (0x1bc..0x1d7): a temporal delimiter, a sequence header for 64×48, then
    // a frame OBU that the fuzzer cut off, which the coded-size check refuses; its size
    // made to fit (15 bytes), so the layer is well framed (it is never decoded here).
    assert_eq!(layered[0x1c6], 0x32);
    layered[0x1c7] = 15;
    let info = imgorigin::pipeline::probe(&layered).unwrap();
    assert_eq!((info.width, info.height), (29184, 26725));
    assert!(matches!(
        imgorigin::pipeline::check(&layered, 40_000_000),
        Err(imgorigin::pipeline::PipelineError::TooManyPixels { .. })
    ));
}

/// An AVIF whose `iref` (26 bytes) holds an `auxl` reference declaring 78 bytes (found by
/// `decode_heif`, 2.2 GB): libheif reads on past the `iref` and takes item 2, an overlay
/// with a 1.9-billion-pixel-wide canvas, as the alpha image; our walk stopped at the
/// overrun and saw no alpha. A child box that overruns its container now makes the file
/// corrupt; with the reference's size corrected, the walk sees the alpha overlay, which has
/// no layers, and refuses it as well.
#[test]
fn heif_box_overrunning_its_container_is_corrupt() {
    let file = Path::new(ROOT).join(
        "tests/fixtures/fuzz-regressions/decode_heif/oom-2f20d84a62adfd0cc7b8c94b70494f138524039d",
    );
    let data = std::fs::read(file).unwrap();
    let corrupt = |d: &[u8]| {
        matches!(
            imgorigin::pipeline::check(d, 1 << 20),
            Err(imgorigin::pipeline::PipelineError::Corrupt(_))
        )
    };
    assert!(corrupt(&data));
    let mut fixed = data.clone();
    assert_eq!(&fixed[0x1a6..0x1ae], b"\0\0\0\x4eauxl");
    fixed[0x1a9] = 0x0e;
    assert!(corrupt(&fixed));
}
