# Sourced by scripts/bench and scripts/bench-quality: the shared harness and corpus, a
# release build, and our server on the corpus folder.
# Set BENCH_SCRIPT (for messages) first. Sets BENCH, CORPUS, PORT, BIN, corpus_abs.
BENCH=${BENCH_DIR:-../shared/bench}
CORPUS=${CORPUS_DIR:-../shared/corpus}
PORT=${PORT:-18080}
if [ ! -f "$BENCH/load.py" ] || [ ! -d "$CORPUS" ]; then
  echo "$BENCH_SCRIPT: needs $BENCH and $CORPUS (the shared benchmark harness and corpus)" >&2
  exit 2
fi
. scripts/build-tools.sh
ensure_build_tools
cargo build --release --locked --bin imgorigin
BIN="${CARGO_TARGET_DIR:-target}/release/imgorigin"
corpus_abs=$(cd "$CORPUS" && pwd)

# start_ours LOG: starts our server in the background on $PORT, prints its PID.
start_ours() {
  # The corpus files sit at the bucket root: let guests read "other" keys for the run.
  IMGORIGIN__STORAGE__FS__ROOT="$corpus_abs" IMGORIGIN__ACCESS__OTHER=public \
  IMGORIGIN__SERVER__LISTEN="127.0.0.1:$PORT" IMGORIGIN__SERVER__METRICS_LISTEN="127.0.0.1:$((PORT + 1))" \
  IMGORIGIN__LOG__LEVEL=warn IMGORIGIN__CACHE__VARIANT_BYTES=512MiB \
    "$BIN" --config config.toml serve > "$1" 2>&1 &
  echo $!
}

# wait_up PORT: until /healthz answers (at most 20 s).
wait_up() {
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on $1 did not start" >&2
  return 1
}
