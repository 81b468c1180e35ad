#!/bin/sh
# The programs the benchmark runs besides the test rig's: curl (the HTTP floor) and GNU time
# (peak RSS of a short-lived command). Installed like scripts/install-system-deps.sh does.
set -eu
missing=""
command -v curl >/dev/null 2>&1 || missing="$missing curl"
test -x /usr/bin/time || missing="$missing time"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then as_root=""; elif sudo -n true 2>/dev/null; then as_root="sudo -n"; else
    echo "missing Debian packages:$missing; install them as root (apt-get install$missing)" >&2
    exit 1
fi
$as_root apt-get update -q
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q --no-install-recommends $missing
