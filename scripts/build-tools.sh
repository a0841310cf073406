# Sourced by scripts/run and scripts/test: installs the native build tools if missing.
# cmake builds the vendored libjpeg-turbo; nasm assembles its SIMD code and rav1e's;
# the openssl CLI signs test vectors independently of our code (tests only).
ensure_build_tools() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v nasm >/dev/null || missing+=(nasm)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing build tools: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
