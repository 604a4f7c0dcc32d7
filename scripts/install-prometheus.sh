#!/usr/bin/env bash
# Install Prometheus and promtool from Debian's `prometheus` package.
#
#   scripts/install-prometheus.sh      # install if missing; prints the Prometheus version
#
# Only the binaries are needed (/usr/bin/prometheus, /usr/bin/promtool): the tests start their
# own prometheus process with a temporary config and data folder, so no service is enabled or
# started here. Idempotent and quiet: when both binaries are present it only prints the version;
# otherwise apt's output is kept in a temporary log that is shown only if the install fails.
set -euo pipefail

log() { echo "install-prometheus: $*" >&2; }

# One install at a time: parallel test workers may all find prometheus missing.
LOCK_DIR="${TALON_BRIDGE_CACHE:-$HOME/.cache/talon-bridge}"
mkdir -p "$LOCK_DIR"
exec 9>"$LOCK_DIR/install-prometheus.lock"
flock 9

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    prometheus --version 2>&1 | head -n 1
    exit 0
fi

command -v apt-get >/dev/null || { log "apt-get is required (Debian or Ubuntu)"; exit 1; }
SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || { log "root or sudo is required to install packages"; exit 1; }
    SUDO=(sudo)
fi

APT_LOG="$(mktemp)"
POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
    if [[ $created_policy -eq 1 ]]; then "${SUDO[@]}" rm -f "$POLICY"; fi
    rm -f "$APT_LOG"
}
trap cleanup EXIT

run_apt() {
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >>"$APT_LOG" 2>&1; then
        log "failed: $*"
        cat "$APT_LOG" >&2
        exit 1
    fi
}

log "installing Debian's prometheus package (once)"
# A policy-rc.d that refuses keeps the package scripts from starting a system-wide server.
if [[ ! -e "$POLICY" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    created_policy=1
fi
run_apt apt-get update -qq
run_apt apt-get install -y -qq --no-install-recommends prometheus
prometheus --version 2>&1 | head -n 1
