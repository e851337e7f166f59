#!/usr/bin/env bash
# Make sure the system packages aegis-hidden needs are present: tor (with
# tor-gencert, for the private test network), i2pd, obfs4proxy (the obfs4 bridge
# of the private network and bridge users) tcpdump (the capture check of
# tests/integration/test_bridge.py and the audit), nodejs and npm (the seed's JavaScript
# client), chromium, chromium-driver and prometheus (promtool) for the operator tests.
# Installs them with apt
# when missing and running as root; otherwise names what is missing.
set -euo pipefail

missing=()
command -v tor >/dev/null 2>&1 || missing+=(tor)
command -v tor-gencert >/dev/null 2>&1 || missing+=(tor)
command -v i2pd >/dev/null 2>&1 || missing+=(i2pd)
command -v obfs4proxy >/dev/null 2>&1 || missing+=(obfs4proxy)
command -v tcpdump >/dev/null 2>&1 || [ -x /usr/bin/tcpdump ] || missing+=(tcpdump)
# Node.js and npm: the seed spec's JavaScript client in the API tests (make setup
# installs its `ws` package with npm ci into tests/integration/js).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Headless Chromium and its WebDriver: the dashboard's browser test and the audit's
# HTML report check. promtool (Debian's prometheus): the alert rules' test.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# de-duplicate
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "aegis-hidden needs the Debian package(s): ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages may start system daemons on 9050/7656; the project never uses
# those and leaves them alone.
