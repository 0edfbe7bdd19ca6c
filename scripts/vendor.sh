#!/usr/bin/env bash
# Re-vendor the front-end libraries from the npm registry into static/vendor/, each from its own
# published tarball (htmx core and its ws/sse extensions come from the same one, so they never
# drift apart). Versions are pinned in the Makefile.
set -euo pipefail
htmx="${HTMX_VERSION:-4.0.1}"
markdown_it="${MARKDOWN_IT_VERSION:-14.1.0}"
dompurify="${DOMPURIFY_VERSION:-3.4.18}"
chartjs="${CHARTJS_VERSION:-4.6.1}"
task_lists="${TASK_LISTS_VERSION:-2.1.1}"
dollarmath="${DOLLARMATH_VERSION:-0.5.0}"
texmath="${TEXMATH_VERSION:-1.0.0}"
katex="${KATEX_VERSION:-0.19.1}"
axe="${AXE_CORE_VERSION:-4.14.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/static/vendor"
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

# The live preview's markdown-it plugins are the originals of the server's mdit-py-plugins ports
# (tasklists, dollarmath), so a streaming reply and its final render agree.
unpack markdown-it-task-lists "$task_lists"
mkdir -p "$vendor/markdown-it-task-lists"
cp "$work/markdown-it-task-lists/package/dist/markdown-it-task-lists.min.js" \
  "$work/markdown-it-task-lists/package/LICENSE" "$vendor/markdown-it-task-lists/"
echo "markdown-it-task-lists@${task_lists}" > "$vendor/markdown-it-task-lists/VERSION"

unpack markdown-it-dollarmath "$dollarmath"
mkdir -p "$vendor/markdown-it-dollarmath"
cp "$work/markdown-it-dollarmath/package/dist/index.umd.min.js" \
  "$vendor/markdown-it-dollarmath/markdown-it-dollarmath.min.js"
cp "$work/markdown-it-dollarmath/package/LICENSE" "$vendor/markdown-it-dollarmath/"
echo "markdown-it-dollarmath@${dollarmath}" > "$vendor/markdown-it-dollarmath/VERSION"

# \(…\) and \[…\], the delimiters GPT-4o, the o-series and DeepSeek write: the original of the
# server's mdit-py-plugins texmath (brackets). Published as one plain script, which defines the
# global `texmath` in a page; chat/markdown.js replaces its KaTeX render rules with the shared ones.
unpack markdown-it-texmath "$texmath"
mkdir -p "$vendor/markdown-it-texmath"
cp "$work/markdown-it-texmath/package/texmath.js" \
  "$vendor/markdown-it-texmath/markdown-it-texmath.js"
cp "$work/markdown-it-texmath/package/license.txt" "$vendor/markdown-it-texmath/LICENSE"
echo "markdown-it-texmath@${texmath}" > "$vendor/markdown-it-texmath/VERSION"

# KaTeX typesets $…$, $$…$$, \(…\) and \[…\] on the page (static/chat/math.js), in the live
# preview and the final reply alike; its fonts are served from here too (the stylesheet names them
# relative to itself).
unpack katex "$katex"
rm -rf "$vendor/katex" && mkdir -p "$vendor/katex"
cp "$work/katex/package/dist/katex.min.js" "$work/katex/package/dist/katex.min.css" \
  "$work/katex/package/LICENSE" "$vendor/katex/"
cp -r "$work/katex/package/dist/fonts" "$vendor/katex/fonts"
echo "katex@${katex}" > "$vendor/katex/VERSION"

# axe-core checks accessibility in the browser tests only: it lives under tests/, never served.
unpack axe-core "$axe"
mkdir -p "$root/tests/e2e/vendor/axe-core"
cp "$work/axe-core/package/axe.min.js" "$work/axe-core/package/LICENSE" \
  "$root/tests/e2e/vendor/axe-core/"
echo "axe-core@${axe}" > "$root/tests/e2e/vendor/axe-core/VERSION"

echo "vendored htmx.org@${htmx}, markdown-it@${markdown_it}, dompurify@${dompurify}," \
  "chart.js@${chartjs}, markdown-it-task-lists@${task_lists}," \
  "markdown-it-dollarmath@${dollarmath}, markdown-it-texmath@${texmath}, katex@${katex} into $vendor; axe-core@${axe} into tests/"
