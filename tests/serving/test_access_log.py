"""Credentials never reach the server's access log (issue 18).

A key sent in the query string (`?api_key=…`, `?key=…`) is refused with a 401, but Daphne's
access log wrote the URL with the key in it. The real server (chatsite.serving.server, as
`make run` and `make run-prod` start it) is started as a subprocess and its log is read.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request

import pytest

from chatsite.serving.redaction import REDACTED, url_redact
from tests.servers import app_env, daphne, migrate


def get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_keys_in_query_strings_are_refused_and_never_written_to_the_access_log(tmp_path):
    env = app_env(tmp_path)
    migrate(env)
    key = "csk-" + secrets.token_urlsafe(32)
    token = secrets.token_urlsafe(16)
    log = tmp_path / "daphne.log"
    with daphne(env, log) as url:
        statuses = [
            get(f"{url}/v1/models?api_key={key}"),
            get(f"{url}/v1/models?key={key}&after=3"),
            get(f"{url}/v1/models?x=1&Access_Token={token}"),
            get(f"{url}/v1/models?q={key}"),  # a key under any name is still a key
            get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}),
            get(f"{url}/streaming-demo?after=12"),
        ]
        deadline = time.monotonic() + 10
        while log.read_text().count('"GET ') < 7 and time.monotonic() < deadline:
            time.sleep(0.05)  # the access log is written after the response
    text = log.read_text()

    assert statuses == [401, 401, 401, 401, 401, 200]
    assert key not in text and key[:12] not in text and token not in text
    assert f"/v1/models?api_key={REDACTED}" in text
    assert f"/v1/models?key={REDACTED}&after=3" in text
    assert f"/v1/models?x=1&Access_Token={REDACTED}" in text
    assert f"/v1/models?q={REDACTED}" in text
    assert "/streaming-demo?after=12" in text  # what is no credential stays readable


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("/v1/models", "/v1/models"),
        ("/a?after=3&page=2", "/a?after=3&page=2"),
        ("/a?api_key=s3cret", f"/a?api_key={REDACTED}"),
        ("/a?apikey=s&API-KEY=t&key=u", f"/a?apikey={REDACTED}&API-KEY={REDACTED}&key={REDACTED}"),
        ("/a?token=s&id_token=t", f"/a?token={REDACTED}&id_token={REDACTED}"),
        ("/a?password=p", f"/a?password={REDACTED}"),
        ("/cb/?code=abc&state=xyz", f"/cb/?code={REDACTED}&state={REDACTED}"),
        ("/a?x=csk-abcdef&y=2", f"/a?x={REDACTED}&y=2"),
        ("/a?x=Bearer%20abc", f"/a?x={REDACTED}"),
        ("/a?secret", f"/a?secret={REDACTED}"),
        ("/a?%6bey=s", f"/a?%6bey={REDACTED}"),  # the name as the app decodes it
        ("/a?sessionid=s;b=1", f"/a?sessionid={REDACTED}"),
        ("/accounts/reset/MQ/c4k2-abc123/", "/accounts/reset/MQ/[redacted]/"),
        ("/a?q=hello&q=world", "/a?q=hello&q=world"),
    ],
)  # fmt: skip
def test_url_redact(url, logged):
    assert url_redact(url) == logged
