# Sourced by scripts/run and scripts/test: installs what the build and the tests need if missing.
# Build: cmake builds the vendored libjpeg-turbo, libavif and libaom (AVIF encode); nasm
# assembles their SIMD code and rav1e's; pkg-config and libheif-dev link the system libheif
# (HEIC/HEIF/AVIF decode; Debian 12's libheif 1.15 comes with libde265, dav1d, libaom, x265).
# Tests only: the openssl CLI signs test vectors independently of our code; heif-enc,
# avifenc, img2webp, exiftool make and read fixtures with tools that are not ours;
# chromium runs the gallery's browser tests (scripts/browser-tests.sh; chromium-driver is
# there for WebDriver clients too).

apt_install_missing() {
  [ $# -eq 0 ] && return 0
  echo "installing: $*" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Debian packages whose presence is checked by dpkg (libraries have no command to look for).
missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

ensure_build_tools() {
  # shellcheck disable=SC2046
  apt_install_missing $(missing_packages cmake nasm pkg-config libheif-dev)
}

ensure_test_tools() {
  ensure_build_tools
  # shellcheck disable=SC2046
  apt_install_missing $(missing_packages openssl libheif-examples libavif-bin webp libimage-exiftool-perl python3-venv chromium chromium-driver prometheus)
  ensure_test_venv
}

# Python packages the tests use as independent decoders (Pillow reads GIF/WebP/AVIF frames;
# pillow-heif reads HEIC with its own libheif build; moto serves the AWS protocols that have
# no Rust test server). One venv under the build cache, reused;
# the tests find it through IMGORIGIN_TEST_PYTHON.
IMGORIGIN_CACHE="${IMGORIGIN_CACHE:-$HOME/.cache/imgorigin}"
TEST_PY_PACKAGES=(pillow pillow-heif blurhash "moto[server,cognitoidp,dynamodb,sqs,s3]")
ensure_test_venv() {
  local venv="$IMGORIGIN_CACHE/venv" stamp
  stamp="$venv/.test-packages-$(echo "${TEST_PY_PACKAGES[*]}" | sha1sum | cut -c1-12)"
  if [ ! -e "$stamp" ]; then
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" || return 1
    echo "installing into $venv: ${TEST_PY_PACKAGES[*]}" >&2
    "$venv/bin/pip" install -q "${TEST_PY_PACKAGES[@]}" || return 1
    touch "$stamp"
  fi
  export IMGORIGIN_TEST_PYTHON="$venv/bin/python"
}
