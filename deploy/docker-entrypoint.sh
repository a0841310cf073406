#!/bin/sh
# Writes secrets given as environment variables (ECS fills them from Secrets Manager) to the
# files deploy/config.production.toml names, then runs imgorigin as PID 1 (so SIGTERM
# reaches it directly). Variables that are unset leave existing files alone.
set -eu
umask 077
dir=${IMGORIGIN_SECRETS_DIR:-/run/imgorigin}   # overridable for tests only
bin=${IMGORIGIN_BIN:-/usr/local/bin/imgorigin}
write() { # write VAR FILE
    eval "val=\${$1:-}"
    if [ -n "$val" ]; then
        printf '%s\n' "$val" > "$dir/$2"
    fi
    unset "$1"
}
write IMGORIGIN_ORIGIN_SECRET origin-secret
write IMGORIGIN_EDGE_VERIFIED_SECRET edge-verified-secret
write IMGORIGIN_SIGNING_KEY_PEM cf-signing-key.pem
if [ -n "${IMGORIGIN_PUBLIC_KEY_PEM:-}" ]; then
    printf '%s\n' "$IMGORIGIN_PUBLIC_KEY_PEM" > "$dir/cf-public.pem"
    export IMGORIGIN__CLOUDFRONT__KEYS='[{ id = "'"${IMGORIGIN_KEY_PAIR_ID:?IMGORIGIN_KEY_PAIR_ID is required with IMGORIGIN_PUBLIC_KEY_PEM}"'", public_key_file = "'"$dir/cf-public.pem"'" }]'
    export IMGORIGIN__CLOUDFRONT__SIGNING_KEY_PAIR_ID="$IMGORIGIN_KEY_PAIR_ID"
    unset IMGORIGIN_PUBLIC_KEY_PEM
fi
# metadata.url with the password from Secrets Manager (alphanumeric: no URL escaping needed).
if [ -n "${IMGORIGIN_DB_URL:-}" ] && [ -n "${IMGORIGIN_DB_PASSWORD:-}" ]; then
    rest=${IMGORIGIN_DB_URL#postgres://}
    export IMGORIGIN__METADATA__URL="postgres://${rest%%@*}:${IMGORIGIN_DB_PASSWORD}@${rest#*@}"
    unset IMGORIGIN_DB_PASSWORD
fi
exec "$bin" "$@"
