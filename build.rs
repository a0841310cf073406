//! Bindings to the system libavif (AVIF encode with libaom: 10-bit 4:4:4, which libheif 1.15
//! cannot do). Generated from the installed header, so struct layouts always match the
//! library we link, whatever its version (Debian 12 ships 0.11; 1.x keeps the same calls).

fn main() {
    let lib = pkg_config::Config::new()
        .atleast_version("0.11")
        .probe("libavif")
        .unwrap_or_else(|e| {
            panic!("libavif not found ({e}); on Debian: apt-get install libavif-dev libclang-dev")
        });
    let header = lib
        .include_paths
        .iter()
        .map(|p| p.join("avif/avif.h"))
        .find(|p| p.exists())
        .unwrap_or_else(|| "/usr/include/avif/avif.h".into());
    println!("cargo:rerun-if-changed={}", header.display());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    bindgen::Builder::default()
        .header(header.display().to_string())
        .clang_args(
            lib.include_paths
                .iter()
                .map(|p| format!("-I{}", p.display())),
        )
        .allowlist_function(
            "avif(Image|Encoder|RGBImage|RWData|Version|ResultToString|CodecName).*",
        )
        .allowlist_type("avif.*")
        .allowlist_var("AVIF_.*")
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate()
        .expect("bindgen: avif.h")
        .write_to_file(out.join("avif.rs"))
        .expect("write avif.rs");
}
