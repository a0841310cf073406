# Sourced by scripts/test (or run directly): the gallery's browser tests (tests/browser/,
# docs/gallery.md). Headless Chromium from Debian (scripts/build-tools.sh installs it),
# puppeteer-core from npm at the version locked in tests/browser/package-lock.json,
# installed once into the build cache; the tests run the built debug binary.
#
#   scripts/browser-tests.sh                      # builds the binary if needed, runs the tests
#   IMGORIGIN_SCREENSHOTS=docs scripts/browser-tests.sh   # also refreshes docs/*.png

IMGORIGIN_CACHE="${IMGORIGIN_CACHE:-$HOME/.cache/imgorigin}"

ensure_browser_test_deps() {
  command -v node >/dev/null || {
    echo "browser tests: node is missing (scripts/deploy-checks.sh ensure_node installs it)" >&2
    return 1
  }
  local dir="$IMGORIGIN_CACHE/browser-tests" lock stamp
  lock="tests/browser/package-lock.json"
  stamp="$dir/.installed-$(sha1sum "$lock" | cut -c1-12)"
  if [ ! -e "$stamp" ]; then
    echo "installing the browser tests' npm packages into $dir" >&2
    mkdir -p "$dir"
    cp tests/browser/package.json "$lock" "$dir/"
    # --ignore-scripts: nothing runs at install time (puppeteer-core downloads no browser).
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null) || return 1
    rm -f "$dir"/.installed-*
    touch "$stamp"
  fi
  export IMGORIGIN_BROWSER_DEPS="$dir/node_modules"
  export IMGORIGIN_CHROMIUM="${IMGORIGIN_CHROMIUM:-$(command -v chromium)}"
  [ -x "$IMGORIGIN_CHROMIUM" ] || {
    echo "browser tests: chromium is missing (scripts/build-tools.sh ensure_test_tools installs it)" >&2
    return 1
  }
}

# Runs tests/browser/*.test.mjs one file at a time against $CARGO_TARGET_DIR/debug/imgorigin.
run_browser_tests() {
  ensure_browser_test_deps || return 1
  export IMGORIGIN_BIN="${IMGORIGIN_BIN:-${CARGO_TARGET_DIR:-target}/debug/imgorigin}"
  [ -x "$IMGORIGIN_BIN" ] || {
    echo "browser tests: no binary at $IMGORIGIN_BIN (build it first)" >&2
    return 1
  }
  echo "browser tests: node --test tests/browser/ ($("$IMGORIGIN_CHROMIUM" --version 2>/dev/null))" >&2
  node --test --test-concurrency=1 tests/browser/
}

# Run directly: build the binary, then the tests.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  . scripts/build-tools.sh
  ensure_test_tools
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imgorigin/target}"
  cargo build --locked
  run_browser_tests
fi
