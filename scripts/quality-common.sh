# Sourced by scripts/bench-quality and scripts/avif-sweep: the SSIMULACRA2 scorer
# (tools/quality), the 7 large corpus photos both measure, and their reference.
# Sets SCORE and QUALITY_FILES.
cargo build --release --locked --manifest-path tools/quality/Cargo.toml \
  --target-dir "${CARGO_TARGET_DIR:-$PWD/target}/quality"
SCORE="${CARGO_TARGET_DIR:-$PWD/target}/quality/release/imgorigin-quality"
QUALITY_FILES="photo-24mp-progressive.jpg photo-17mp-progressive.jpg camera-16mp-motog9.jpg
  camera-12mp-olympus-ep3.jpg camera-12mp-iphone7-orient6.jpg camera-9mp-nokia83.jpg camera-8mp-iphone6.jpg"

# make_reference SOURCE OUT.png: the full-resolution original, oriented and converted to
# sRGB by libvips (the scorer downscales it to each candidate's size).
make_reference() {
  local v="${2%.png}.v"
  vips autorot "$1" "$v"
  if vipsheader -f icc-profile-data "$v" >/dev/null 2>&1; then
    vips icc_transform "$v" "$2" srgb --embedded
  else
    vips copy "$v" "$2"
  fi
  rm -f "$v"
}
