#!/bin/sh
# Build the Debian 12 package from the sdist alone, as a distribution builds from the release
# tarball: unpack it, add packaging/debian/ as debian/ and the pinned requirements, run
# dpkg-buildpackage (debhelper + dh-virtualenv), then lintian, which must report no error.
# Usage: build.sh OUTDIR [SDIST] (make deb: the sdist of `make dist`). Needs the packages of
# scripts/install-system-deps.sh.
set -eu
out=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/tvmaniac_refreshd/__init__.py")
sdist=${2:-$root/dist/tvmaniac_refreshd-$version.tar.gz}
[ -f "$sdist" ] || { echo "build.sh: $sdist is missing; run make dist first" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
src=$work/tvmaniac_refreshd-$version
cp -r "$src/packaging/debian" "$src/debian"
rm "$src/debian/build.sh"
# The lock's Linux set; lockfile.py needs only the standard library and `packaging`.
"${PYTHON:-python3}" "$src/packaging/lockfile.py" requirements > "$src/requirements.lock"
# The package's version is the program's (tvmaniac_refreshd/__init__.py, its only source).
cat > "$src/debian/changelog" <<CHANGELOG
tvmaniac-refreshd ($version) bookworm; urgency=medium

  * Release $version (its changes: CHANGELOG.md in the source).

 -- tvmaniac-refreshd maintainers <maintainers@tvmaniac-refreshd.org>  $(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(stat -c %Y "$sdist")}")
CHANGELOG
(cd "$src" && dpkg-buildpackage --build=binary --no-sign)
mkdir -p "$out"
cp "$work"/tvmaniac-refreshd_"$version"_*.deb "$out"/
lintian --fail-on error "$out"/tvmaniac-refreshd_"$version"_*.deb
