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
