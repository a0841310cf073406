//! Link settings only.

fn main() {
    // libaom 3.11 is linked statically (libavif-sys, AVIF encode) while libheif loads
    // Debian's libaom 3.6: without this the binary exports its copy's `aom_*` symbols and
    // libheif's calls bind to them across an ABI it was not built for.
    println!("cargo:rustc-link-arg=-Wl,--exclude-libs,ALL");
}
