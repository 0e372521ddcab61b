#!/bin/sh
# Installs what the end-to-end test needs: code-server 4.100.3 and puppeteer-core (npm, from
# package-lock.json) and, where this runs as root on Debian, the apt packages they need
# (libkrb5-dev builds kerberos, ripgrep seeds @vscode/ripgrep, chromium is the browser).
# Nothing here downloads at test time; this runs once, from `make e2e-setup` or by hand.
set -eu
cd "$(dirname "$0")"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for pkg in libkrb5-dev ripgrep chromium; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
    fi
fi

# @vscode/ripgrep's postinstall downloads rg from GitHub; give it Debian's rg in its cache instead.
RG_CACHE="${TMPDIR:-/tmp}/vscode-ripgrep-cache-1.15.11"
RG_TARBALL="$RG_CACHE/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if command -v rg >/dev/null 2>&1 && [ ! -s "$RG_TARBALL" ]; then
    mkdir -p "$RG_CACHE"
    tar -czf "$RG_TARBALL" -C "$(dirname "$(command -v rg)")" rg
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found: the VS Code end-to-end test will be skipped"
    exit 0
fi

# node-pty's postinstall runs `npx node-gyp` (npm_config_yes answers its prompt); node headers
# come from Debian's nodejs (npm_config_nodedir) instead of a download; root needs --unsafe-perm.
export npm_config_yes=true npm_config_nodedir=/usr
if [ -x node_modules/.bin/code-server ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    echo "code-server and puppeteer-core already installed from package-lock.json"
elif [ -f package-lock.json ]; then
    npm ci --unsafe-perm --no-audit --no-fund
else
    npm install --unsafe-perm --no-audit --no-fund
fi
