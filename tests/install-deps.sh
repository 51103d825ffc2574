#!/usr/bin/env bash
# Installs what the tests need beyond Rust, when it is missing:
#   redis-server  (Debian package redis-server): the Redis store tests
#   chromium      (Debian package chromium):     the browser tests
#   node, npm     (Debian packages nodejs, npm): drives chromium (playwright-core)
#   ip            (Debian package iproute2):     the mDNS test's network namespace
#   a CJK font    (Debian package fonts-wqy-microhei): the page's Chinese screenshots
# As root it uses apt-get; otherwise it names the packages to install and fails.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v ip >/dev/null || missing+=(iproute2)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "The tests need these Debian packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
