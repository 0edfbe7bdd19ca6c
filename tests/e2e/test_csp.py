"""The Content-Security-Policy in Chromium: every page the app serves works under it with no
violation, and an XSS corpus sent as user text and as model output never runs.

One server for the module: the OpenAI provider pointed at the fake upstream (so a test decides
what "the model" writes), the demo model and a superuser for the admin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "csp-e2e-password"
ASSISTANT = "#messages > article[data-role='assistant']"

# Markdown that exercises every part of the renderers: a heading, emphasis, a link, an aligned
# table (markdown-it aligns cells), a highlighted code block and a list.
RICH_REPLY = (
    "## A heading\n\nSome **bold** and a [link](https://example.com/).\n\n"
    "| Left | Centre | Right |\n| :--- | :---: | ---: |\n| a | b | 1 |\n| c | d | 22 |\n\n"
    '```python\ndef hello():\n    return "hi"\n```\n\n1. one\n2. two\n'
)

# Registered before any page script runs, on every page of a context: CSP violations are sent
# to the test as they happen (so none is lost to a navigation).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolation({
    directive: event.effectiveDirective, blocked: event.blockedURI, source: event.sourceFile,
    line: event.lineNumber, sample: event.sample, page: location.href,
  });
});
"""


@dataclass
class Visit:
    page: Any
    violations: list[dict[str, Any]] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def site(serving_with_upstream, create_superuser) -> Iterator[tuple[str, object]]:
    with serving_with_upstream(
        "chatsite-e2e-csp-",
        prepare=lambda env: create_superuser(env, "staff", PASSWORD),
        CHAT_DEMO_TOKENS_PER_SECOND="60",
    ) as served:
        yield served


@pytest.fixture
def visit(browser: Any, site: tuple[str, object], page_errors) -> Iterator[Callable[[], Visit]]:
    """A fresh browser context (a new visitor) whose CSP violations and dialogs are recorded."""
    contexts: list[Any] = []

    def open_visit() -> Visit:
        context = browser.new_context(base_url=site[0], viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        visit = Visit(page=None)
        context.expose_binding("__cspViolation", lambda _source, v: visit.violations.append(v))
        context.add_init_script(CSP_LISTENER)
        visit.page = context.new_page()
        visit.page.on("dialog", lambda d: (visit.dialogs.append(d.message), d.dismiss()))
        page_errors.watch(visit.page)
        return visit

    yield open_visit
    for context in contexts:
        context.close()
    if page_errors.errors:
        pytest.fail("The page logged errors:\n" + "\n".join(page_errors.errors), pytrace=False)


def assert_strict_policy(response: Any) -> None:
    policy = response.headers.get("content-security-policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives.get("script-src") == ["'self'"], policy
    assert directives.get("default-src") == ["'self'"], policy
    assert directives.get("object-src") == ["'none'"], policy
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, policy


def wait_for_status(page: Any, status: str, timeout: float = 20_000) -> None:
    page.wait_for_function(
        """(status) => {
          const all = document.querySelectorAll("#messages > article[data-role='assistant']");
          return all.length > 0 && all[all.length - 1].dataset.status === status;
        }""",
        arg=status,
        timeout=timeout,
    )


def sign_in_as_staff(page: Any) -> None:
    assert_strict_policy(page.goto("/admin/login/"))
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


# --- Every page works under the policy --------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_reply_streams_and_renders_with_no_csp_violation(visit, site, transport):
    _, upstream = site
    upstream.script(text=RICH_REPLY, chunks=12, delay=0.15)
    v = visit()
    page = v.page
    query = "?transport=sse" if transport == "sse" else ""
    assert_strict_policy(page.goto(f"/streaming-demo{query}"))
    label = "Server-sent events" if transport == "sse" else "Connected · WebSocket"
    page.get_by_text(label).wait_for()

    page.fill("#message-input", "Show me some Markdown")
    page.press("#message-input", "Enter")
    # While it streams, the live Markdown preview shows the table (DOMPurify'd markdown-it).
    page.wait_for_selector(f"{ASSISTANT} .msg-text.live table", timeout=20_000)
    wait_for_status(page, "complete")
    reply = page.locator(ASSISTANT).last
    assert reply.locator(".markdown table td").count() == 6
    assert reply.locator(".markdown pre code span").count() > 0  # highlighted by Pygments
    # Aligned cells keep their alignment without a style attribute (style-src has no inline).
    right = reply.locator(".markdown td").nth(2)
    assert right.evaluate("(td) => getComputedStyle(td).textAlign") == "right"
    assert v.violations == []


def test_the_sign_in_and_error_pages_have_no_csp_violation(visit, page_errors):
    page_errors.allow(r"status of 404 \(Not Found\)")
    v = visit()
    page = v.page
    assert_strict_policy(page.goto("/accounts/login/"))
    assert page.locator("form input[name=password]").count() == 1
    not_found = page.goto("/no-such-page")
    assert not_found is not None and not_found.status == 404
    assert_strict_policy(not_found)
    assert page.locator("main.auth h1").inner_text() == "Not found"  # styled, like the app
    assert v.violations == []


def test_the_admin_pages_work_with_no_csp_violation(visit, site, analytics_charts, drawn):
    _, upstream = site
    upstream.script(text=RICH_REPLY, chunks=3)
    v = visit()
    page = v.page
    page.goto("/streaming-demo")  # a conversation for the admin to list and show
    page.get_by_text("Connected · WebSocket").wait_for()
    page.fill("#message-input", "Something for the admin to review")
    page.press("#message-input", "Enter")
    wait_for_status(page, "complete")
    sign_in_as_staff(page)

    assert_strict_policy(page.goto("/admin/chat/conversation/"))
    assert page.locator("#result_list tbody tr").count() > 0
    page.locator("#result_list tbody tr th a").first.click()
    page.wait_for_selector(".review-transcript .review-msg .markdown table")

    assert_strict_policy(page.goto("/admin/chat/usagereport/"))
    page.wait_for_selector("#chart-cost")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-cost')")
    for canvas_id in analytics_charts:
        chart = drawn(page, canvas_id)
        assert chart["chart"] and chart["painted"] > 100, (canvas_id, chart)
    assert v.violations == []


# --- An XSS corpus under the policy -----------------------------------------------------------

# Each payload, if it ever ran, would set window.__xss or open a dialog (both recorded).
XSS_PAYLOADS = [
    '<script>window.__xss="script"</script>',
    "<img src=x onerror=\"window.__xss='img'\">",
    "<svg onload=\"window.__xss='svg'\"><circle r=1 /></svg>",
    '<svg><script>window.__xss="svg-script"</script></svg>',
    '<iframe srcdoc="<script>parent.__xss=1</script>"></iframe>',
    '<details open ontoggle=alert("details")>x</details>',
    "<a href=\"javascript:window.__xss='a'\">an html link</a>",
    '[markdown link](javascript:window.__xss="md-link")',
    '[entity link](&#106;avascript:alert("md-entity")) [case](JaVaScRiPt:alert("case"))',
    '[vb](vbscript:msgbox("vb")) [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg)',
    '<javascript:alert("autolink")>',
    '![image](javascript:alert("md-image"))',
    "![x](https://example.com/x.png\" onerror=\"alert('md-image-attr'))",
    '[t](https://example.com "title\\" onmouseover=\\"alert(\'md-title\')")',
    '&lt;script&gt;alert("entities")&lt;/script&gt; &#60;img src=x onerror=alert("e2")&#62;',
    '</textarea><script>window.__xss="textarea"</script><textarea>',
    '"><img src=x onerror=alert("attr-double")> \'><svg onload=alert("attr-single")>',
    '`${alert("template")}` ${window.__xss="template2"} {{ 7|add:7 }} {% now "Y" %}',
    '<div hx-get="/admin/" hx-trigger="load" hx-target="body">hx-get</div>',
    "<b hx-on:click=\"window.__xss='hx-on'\" hx-on::load=\"window.__xss='hx-on-load'\">hx</b>",
    'plain text hx-on:htmx:load="alert(1)" data-hx-on:click="alert(2)" hx-vals=\'js:{a:alert(3)}\'',
    '<span hx-swap-oob="innerHTML:body">oob</span><template><script>alert("t")</script></template>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert("mxss")>',
    "<style>body{display:none}</style><link rel=stylesheet href=//evil.example/x.css>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(\'meta\')"><base href=//evil/>',
    '```"><img src=x onerror=alert("fence-lang")>\ncode\n```',
    '$\\href{javascript:alert("katex")}{click}$ and $$\\htmlData{onload=alert(1)}{x}$$',
    "\\(<img src=x onerror=alert(1)>\\) and \\(\\href{javascript:alert('katex-paren')}{x}\\)",
    '\\[<svg onload=alert("bracket")>\\]\n\nText \\[</span><img src=x onerror=alert(2)>\\] on',
    "<form action=\"javascript:alert('form')\"><button>go</button></form>",
]

# Watches the DOM from before the first script runs: every node the parser or a script adds,
# and every attribute set, on every page. Findings are what an injection would look like.
DOM_WATCH = """
window.__findings = [];
// Titles in the sidebar are text; the rows' ⋯ menus around them (forms, htmx) are the page's.
const TEXT = ".msg-text, .review-msg-text, .review-plain, #conversation-list .conversation-item, "
  + "#conversation-title";
const SCHEMES = /^(javascript|vbscript|data):/;
const NOT_IN_TEXT = new Set(["SCRIPT", "IFRAME", "OBJECT", "EMBED", "STYLE", "META", "BASE",
  "LINK", "FORM", "IMG", "TEXTAREA", "SELECT", "TEMPLATE", "DETAILS", "FRAME"]);
function check(element) {
  for (const attribute of element.attributes || []) {
    const name = attribute.name.toLowerCase();
    const value = attribute.value.replace(/[\\s\\u0000-\\u001f]/g, "").toLowerCase();
    if (name.startsWith("on")) window.__findings.push(`${element.tagName} ${name}`);
    if (["href", "src", "action", "formaction", "xlink:href", "srcdoc"].includes(name)
        && SCHEMES.test(value)) window.__findings.push(`${element.tagName} ${name}=${value}`);
  }
  const text = element.closest && element.closest(TEXT);
  if (!text) return;
  // KaTeX draws math as MathML and (for roots and the like) SVG: those belong there. (Buttons
  // are allowed: the page adds Copy buttons to code blocks; handlers and URLs are checked above.)
  const math = element.closest(".math");
  if (NOT_IN_TEXT.has(element.tagName) && !(math && element.tagName !== "SCRIPT"))
    window.__findings.push(`${element.tagName} in message text`);
  // The page itself sets hx-sse:connect on a streaming reply's text element, never inside it.
  if (text === element) return;
  for (const attribute of element.attributes || []) {
    if (/^(data-)?hx-/.test(attribute.name)) window.__findings.push(`${attribute.name} in text`);
  }
}
window.__scanAll = () => {
  document.querySelectorAll("*").forEach(check);
  return window.__findings;
};
function walk(node) {
  if (node.nodeType !== 1) return;
  check(node);
  node.querySelectorAll("*").forEach(check);
}
new MutationObserver((records) => {
  for (const record of records) {
    if (record.type === "attributes") check(record.target);
    record.addedNodes.forEach(walk);
  }
}).observe(document, {subtree: true, childList: true, attributes: true});
"""

SCAN = "() => window.__scanAll()"
# Four payloads a turn (each also alone at the start of one), to keep the test short.
TURNS = ["\n\n".join(XSS_PAYLOADS[i : i + 4]) for i in range(0, len(XSS_PAYLOADS), 4)]


def assert_nothing_ran(v: Visit) -> None:
    page = v.page
    assert page.evaluate("() => window.__xss") is None
    assert page.evaluate(SCAN) == []
    assert v.dialogs == []


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_an_xss_corpus_as_user_text_and_as_model_output_never_runs(
    visit, site, transport, page_errors
):
    """Every payload goes in as the visitor's message and comes back as the model's reply, which
    streams (shown live by markdown-it + DOMPurify) and is then rendered by the server
    (markdown-it-py + nh3); then the whole conversation is reloaded and opened in the admin.

    No payload may run (window.__xss stays unset, no dialog opens), and no element of a message
    may carry an event handler, a javascript:/data: URL, htmx attributes or a tag the renderers
    never produce — checked on every DOM change, so a payload that lived for one frame of the
    stream is caught too. And no CSP violation may be reported at all: the policy is the second
    line of defence, and the assertion is that it never has to act. A payload that reached the
    DOM as markup and was only stopped by the CSP (an injected inline script is blocked and
    reported as a violation) is a failure of the escaping, so "no violation" here means the
    payloads stayed text, and the app's own pages still need nothing the policy refuses.
    """
    url, upstream = site
    v = visit()
    page = v.page
    page.context.add_init_script(DOM_WATCH)
    query = "?transport=sse" if transport == "sse" else ""
    page.goto(f"/streaming-demo{query}")
    page.get_by_text(
        "Server-sent events" if transport == "sse" else "Connected · WebSocket"
    ).wait_for()

    for index, payload in enumerate(TURNS, start=1):
        upstream.script(text=f"{payload}\n\nreply {index} ends here", chunks=5, delay=0.02)
        page.fill("#message-input", payload)
        page.press("#message-input", "Enter")
        page.wait_for_function(
            """(n) => {
              const all = document.querySelectorAll("#messages > article[data-role='assistant']");
              return all.length === n && all[n - 1].dataset.status === "complete";
            }""",
            arg=index,
            timeout=20_000,
        )
        user = page.locator("#messages > article[data-role='user'] .msg-text").nth(index - 1)
        assert user.text_content() == payload  # shown exactly, as text
        assert f"reply {index} ends here" in page.locator(ASSISTANT).nth(index - 1).inner_text()
    assert_nothing_ran(v)

    # The final render of the whole conversation, from the database.
    page.reload()
    page.wait_for_selector(f"{ASSISTANT}:nth-of-type(2)")
    assert page.locator(ASSISTANT).count() == len(TURNS)
    assert_nothing_ran(v)
    conversation_id = page.url.split("/c/")[1].split("?")[0]

    # The admin: the list (the title is the first payload) and the transcript.
    sign_in_as_staff(page)
    page.goto("/admin/chat/conversation/")
    page.wait_for_selector("#result_list")
    assert_nothing_ran(v)
    page.goto(f"/admin/chat/conversation/{conversation_id}/change/")
    page.wait_for_selector(".review-transcript .review-msg")
    assert page.locator(".review-msg-user").count() == len(TURNS)
    assert page.locator(".review-msg-user .review-msg-text").first.text_content() == TURNS[0]
    assert_nothing_ran(v)
    assert v.violations == []

    # The watchers work: markup planted in the transcript is found, and its inline script and
    # handler are refused by the policy and reported.
    page_errors.allow("Executing inline (script|event handler) violates the following Content")
    page.evaluate(
        """() => {
          const text = document.querySelector(".review-msg-text");
          text.insertAdjacentHTML("beforeend", '<img src="/static/chat/favicon.svg" onload="1">');
          const script = document.createElement("script");
          script.textContent = "window.__xss = 'planted'";
          text.append(script);
        }"""
    )
    page.wait_for_function("() => window.__findings.length >= 2")
    assert {"IMG onload", "IMG in message text", "SCRIPT in message text"} <= set(
        page.evaluate(SCAN)
    )
    assert page.evaluate("() => window.__xss") is None
    deadline = time.monotonic() + 10
    while len(v.violations) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # the reports arrive through the exposed binding
    assert {x["directive"] for x in v.violations} == {"script-src-attr", "script-src-elem"}
