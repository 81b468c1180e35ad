#!/bin/sh
# Install the Debian packages the tests and the demo need, if any are missing.
# Runs apt-get as root directly, or through `sudo -n` for a non-root developer.
set -eu

# debootstrap: a Debian 13 tree (systemd 257) for the systemd-creds tests, built once per machine.
# git: the credential-helper tests; zsh, fish: the completion tests; man-db: `man -l` of the man
# page; msmtp: the mail recipe's test. keepassxc, libkf5wallet-bin (kwalletd5) and
# libqca-qt5-2-plugins (KWallet's encrypted sessions): the Secret Services besides gnome-keyring.
# bash-completion: TAB completion of an installed wheel and of the .deb; dpkg-dev, debhelper,
# dh-virtualenv, python3-dev, lintian: `make deb` (packaging/debian/); ruby: the Homebrew
# formula's checks (tests/unit/test_packaging.py).
PACKAGES="gnome-keyring libsecret-tools dbus-daemon dbus-user-session python3-venv systemd-container curl time debootstrap git zsh fish man-db msmtp keepassxc libkf5wallet-bin libqca-qt5-2-plugins bash-completion dpkg-dev debhelper dh-virtualenv python3-dev lintian ruby"

missing=""
for package in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo -n"
else
    echo "missing Debian packages:$missing; install them as root (apt-get install$missing)" >&2
    exit 1
fi
echo "installing Debian packages:$missing"
$as_root apt-get update -q
# --no-install-recommends: gnome-keyring's recommends would edit the host's PAM config.
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q --no-install-recommends $missing
