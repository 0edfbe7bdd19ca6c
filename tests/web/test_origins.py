"""The WebSocket handshake's origin rule, through the real ASGI application: only the site's own
origin (scheme, host and port) and CSRF_TRUSTED_ORIGINS may open /ws/chat/, exactly the origins
Django's CSRF check lets POST to the composer."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chatsite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "127.0.0.1:8000"
TEST_HOST = "testserver"


@pytest.fixture
def handshake(anonymous_session):
    async def handshake(
        origin: str | None, *, host: str = HOST, scheme: str = "ws", extra=()
    ) -> tuple[bool, int | None]:
        """Open /ws/chat/ as a signed-in visitor's browser would; (accepted, close code)."""
        cookie, _ = await anonymous_session()
        headers = [(b"host", host.encode()), (b"cookie", cookie.encode()), *extra]
        if origin is not None:
            headers.append((b"origin", origin.encode("latin1")))
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        communicator.scope["scheme"] = (
            scheme  # the scope Daphne builds carries it; the test's lacks it
        )
        accepted, code = await communicator.connect()
        if accepted:
            await communicator.disconnect()
        return accepted, code

    return handshake


async def composer_post(origin: str, *, secure: bool = False) -> int:
    """POST to the composer with a valid CSRF token and cookie, so only the Origin decides.
    (Django's test client always sends `Host: testserver`.)"""
    client = AsyncClient(enforce_csrf_checks=True)
    page = await client.get("/streaming-demo", secure=secure)
    token = page.cookies["csrftoken"].value
    response = await client.post(
        "/streaming-demo/messages",
        {"message": "", "action": "send"},  # empty: a 400 when the origin passes, not a reply
        headers={"origin": origin, "x-csrftoken": token, "hx-request": "true"},
        secure=secure,
    )
    return response.status_code


async def test_the_sites_own_origin_opens_the_socket(handshake):
    assert await handshake(f"http://{HOST}") == (True, None)


async def test_another_port_of_the_same_host_is_refused_before_accept(handshake):
    accepted, code = await handshake("http://127.0.0.1:9999")
    # Closed during the handshake: Daphne turns that into an HTTP 403.
    assert not accepted and code == 1000


async def test_the_same_host_on_another_scheme_is_refused(handshake):
    assert not (await handshake(f"https://{HOST}"))[0]
    assert not (await handshake(f"http://{HOST}", scheme="wss"))[0]


async def test_a_secure_site_accepts_its_https_origin(handshake):
    assert (await handshake(f"https://{HOST}", scheme="wss"))[0]


async def test_a_host_name_without_the_port_is_not_the_site(handshake):
    # AllowedHostsOriginValidator let this through: it compared host names only.
    assert not (await handshake("http://127.0.0.1"))[0]
    assert not (await handshake("http://localhost:8000"))[0]


async def test_an_origin_on_a_host_the_site_does_not_serve_is_refused(handshake):
    assert not (await handshake("http://evil.example:8000", host="evil.example:8000"))[0]


async def test_a_trusted_origin_is_accepted(settings, handshake):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    assert (await handshake("https://chat.example.com"))[0]
    assert not (await handshake("http://chat.example.com"))[0]
    assert not (await handshake("https://chat.example.com:8443"))[0]


async def test_a_wildcard_trusted_origin_admits_subdomains_only_on_its_scheme(settings, handshake):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    assert (await handshake("https://app.example.com"))[0]
    assert (await handshake("https://a.b.example.com"))[0]
    assert (await handshake("https://example.com"))[0]  # Django's is_same_domain admits it too
    assert not (await handshake("http://app.example.com"))[0]
    assert not (await handshake("https://app.example.com.evil.test"))[0]
    assert not (await handshake("https://notexample.com"))[0]


async def test_a_handshake_without_an_origin_is_refused(handshake):
    # Browsers always send one; its absence is a script, which can send the right one.
    assert not (await handshake(None))[0]


@pytest.mark.parametrize(
    "origin",
    ["null", "", "127.0.0.1:8000", "http://[::1", "http://127.0.0.1:8000/", "HTTP://127.0.0.1:8000",
     "http://127.0.0.1:8000\u00ff", " http://127.0.0.1:8000"],
)  # fmt: skip
async def test_malformed_origins_are_refused_without_an_error(origin, handshake):
    assert not (await handshake(origin))[0]


async def test_two_origin_headers_are_refused(handshake):
    own = (b"origin", f"http://{HOST}".encode())
    assert not (await handshake(f"http://{HOST}", extra=[own]))[0]


async def test_the_proxy_header_counts_only_when_the_site_trusts_it(settings, handshake):
    forwarded = [(b"x-forwarded-proto", b"https")]
    # Without SECURE_PROXY_SSL_HEADER the header is anyone's to send: the site is still http.
    assert not (await handshake(f"https://{HOST}", extra=forwarded))[0]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert (await handshake(f"https://{HOST}", extra=forwarded))[0]
    assert not (await handshake(f"http://{HOST}", extra=forwarded))[0]


@pytest.mark.parametrize(
    ("origin", "secure", "trusted"),
    [
        (f"http://{TEST_HOST}", False, []),
        ("http://testserver:9999", False, []),
        (f"https://{TEST_HOST}", False, []),
        (f"https://{TEST_HOST}", True, []),
        (f"http://{TEST_HOST}", True, []),
        ("http://testserver:80", False, []),
        ("https://chat.example.com", False, ["https://chat.example.com"]),
        ("https://app.example.com", False, ["https://*.example.com"]),
        ("http://app.example.com", False, ["https://*.example.com"]),
        ("null", False, []),
        ("http://[::1", False, []),
    ],
)
async def test_the_socket_admits_exactly_the_origins_a_post_may_come_from(
    settings, origin, secure, trusted, handshake
):
    settings.CSRF_TRUSTED_ORIGINS = trusted
    post_status = await composer_post(origin, secure=secure)
    assert post_status in (400, 403)
    accepted, _ = await handshake(origin, host=TEST_HOST, scheme="wss" if secure else "ws")
    assert accepted == (post_status != 403), (origin, post_status)
