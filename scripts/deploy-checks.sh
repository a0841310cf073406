# Sourced by scripts/test: checks of deploy/ (issue 7).
# - the CloudFront Function's unit tests, with node (installed from Debian if missing);
# - cfn-lint on the CloudFormation stack, zero errors and warnings (installed from PyPI into a
#   venv under ~/.cache/imgorigin/venv, reused when present);
# - the container image builds, only when a docker engine answers (skipped otherwise).
# Each returns non-zero on failure; run_deploy_checks runs them all and reports.

IMGORIGIN_CACHE="${IMGORIGIN_CACHE:-$HOME/.cache/imgorigin}"

ensure_node() {
  command -v node >/dev/null && return 0
  echo "installing nodejs (CloudFront Function tests)" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs >/dev/null
}

cloudfront_function_tests() {
  ensure_node || { echo "deploy: cannot install node" >&2; return 1; }
  echo "deploy: node --test deploy/cloudfront/" >&2
  node --test deploy/cloudfront/
}

ensure_cfn_lint() {
  local venv="$IMGORIGIN_CACHE/venv"
  if [ ! -x "$venv/bin/cfn-lint" ]; then
    echo "installing cfn-lint into $venv" >&2
    if ! python3 -m venv "$venv" 2>/dev/null; then
      # Debian's python3 ships venv separately.
      local sudo=""
      [ "$(id -u)" -ne 0 ] && sudo="sudo"
      rm -rf "$venv"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv" || return 1
    fi
    "$venv/bin/pip" install -q cfn-lint || return 1
  fi
  CFN_LINT="$venv/bin/cfn-lint"
}

cfn_lint_stack() {
  ensure_cfn_lint || { echo "deploy: cannot install cfn-lint" >&2; return 1; }
  echo "deploy: cfn-lint deploy/cloudformation/imgorigin.yaml ($("$CFN_LINT" --version))" >&2
  "$CFN_LINT" deploy/cloudformation/imgorigin.yaml && echo "deploy: cfn-lint: no errors, no warnings" >&2
}

docker_image_build() {
  if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    echo "deploy: docker build skipped: no docker engine" >&2
    return 0
  fi
  echo "deploy: docker build -f deploy/Dockerfile" >&2
  docker build -q -f deploy/Dockerfile -t imgorigin:test . >/dev/null
}

run_deploy_checks() {
  local failed=()
  cloudfront_function_tests || failed+=("CloudFront Function tests")
  cfn_lint_stack || failed+=(cfn-lint)
  docker_image_build || failed+=("docker build")
  if [ ${#failed[@]} -ne 0 ]; then
    echo "deploy checks FAILED: ${failed[*]}" >&2
    return 1
  fi
  echo "deploy checks passed" >&2
}
