#!/usr/bin/env bash
# Re-vendor htmx core and its ws/sse extensions from one npm tarball, so versions never drift apart.
set -euo pipefail
version="${1:-4.0.1}"
dest="$(cd "$(dirname "$0")/.." && pwd)/static/vendor/htmx"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "htmx.org@${version}" >/dev/null && tar xzf "htmx.org-${version}.tgz")
mkdir -p "$dest/ext"
cp "$work/package/dist/htmx.min.js" "$dest/htmx.min.js"
cp "$work/package/dist/ext/hx-ws.min.js" "$work/package/dist/ext/hx-sse.min.js" "$dest/ext/"
cp "$work/package/LICENSE" "$dest/LICENSE"
echo "htmx.org@${version}" > "$dest/VERSION"
echo "vendored htmx.org@${version} into $dest"
