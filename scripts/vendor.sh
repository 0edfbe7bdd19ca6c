#!/usr/bin/env bash
# Re-vendor the front-end libraries from the npm registry into static/vendor/, each from its own
# published tarball (htmx core and its ws/sse extensions come from the same one, so they never
# drift apart). Versions are pinned in the Makefile.
set -euo pipefail
htmx="${HTMX_VERSION:-4.0.1}"
markdown_it="${MARKDOWN_IT_VERSION:-14.1.0}"
dompurify="${DOMPURIFY_VERSION:-3.4.18}"
chartjs="${CHARTJS_VERSION:-4.6.1}"
vendor="$(cd "$(dirname "$0")/.." && pwd)/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

unpack() {  # unpack NAME VERSION -> $work/NAME/package
  mkdir -p "$work/$1"
  (cd "$work/$1" && npm pack --silent "$1@$2" >/dev/null && tar xzf ./*.tgz)
}

unpack htmx.org "$htmx"
mkdir -p "$vendor/htmx/ext"
cp "$work/htmx.org/package/dist/htmx.min.js" "$vendor/htmx/htmx.min.js"
cp "$work/htmx.org/package/dist/ext/hx-ws.min.js" "$work/htmx.org/package/dist/ext/hx-sse.min.js" \
  "$vendor/htmx/ext/"
cp "$work/htmx.org/package/LICENSE" "$vendor/htmx/LICENSE"
echo "htmx.org@${htmx}" > "$vendor/htmx/VERSION"

# markdown-it renders the live preview of a streaming reply; the server renders the finished
# reply with markdown-it-py, its Python port, so the two agree.
unpack markdown-it "$markdown_it"
mkdir -p "$vendor/markdown-it"
cp "$work/markdown-it/package/dist/markdown-it.min.js" "$work/markdown-it/package/LICENSE" \
  "$vendor/markdown-it/"
echo "markdown-it@${markdown_it}" > "$vendor/markdown-it/VERSION"

unpack dompurify "$dompurify"
mkdir -p "$vendor/dompurify"
cp "$work/dompurify/package/dist/purify.min.js" "$work/dompurify/package/LICENSE" \
  "$vendor/dompurify/"
echo "dompurify@${dompurify}" > "$vendor/dompurify/VERSION"

# Chart.js draws the admin's usage analytics charts.
unpack chart.js "$chartjs"
mkdir -p "$vendor/chart.js"
cp "$work/chart.js/package/dist/chart.umd.min.js" "$vendor/chart.js/"
cp "$work/chart.js/package/LICENSE.md" "$vendor/chart.js/LICENSE.md"
echo "chart.js@${chartjs}" > "$vendor/chart.js/VERSION"

echo "vendored htmx.org@${htmx}, markdown-it@${markdown_it}, dompurify@${dompurify}," \
  "chart.js@${chartjs} into $vendor"
