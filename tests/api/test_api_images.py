"""Images in the API (`image_url` content parts): data URLs read like uploads and sent to the model
in each SDK's own form (the fake upstream decodes what it received), earlier turns' images read
once, every refusal in OpenAI's error shape, and the guarded fetch of image URLs (SSRF: every
address form, a real server on 127.0.0.1, DNS rebinding, redirects, size and time limits)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json

import httpcore2 as httpcore
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chat.api import images as api_images
from chat.api.keys import api_key_create
from chat.api.remote import FetchRefused, address_refused, fetch_image
from chat.models import Attachment, Conversation, Message

COMPLETIONS = "/v1/chat/completions"


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CHAT_UPLOAD_RATE_LIMIT = ""
    settings.CHAT_UPLOAD_IP_RATE_LIMIT = ""
    settings.CHAT_API_KEY_RATE_LIMIT = ""
    return settings.MEDIA_ROOT


@pytest.fixture
def key(django_user_model, media_root) -> str:
    return api_key_create(user=django_user_model.objects.create_user("ada"), name="tests")[1]


@pytest.fixture
def anthropic_upstream(settings, fake_upstream):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = fake_upstream.anthropic_base_url
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]
    return fake_upstream


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """How many images were read (each in its own child process), by their sizes in bytes."""
    seen: list[int] = []
    real = api_images.attachment_process

    async def counted(data: bytes):
        seen.append(len(data))
        return await real(data)

    monkeypatch.setattr(api_images, "attachment_process", counted)
    return seen


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url, "detail": "auto"}}


def asking(*parts: dict, text: str = "What is this?") -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text}, *parts]}


async def post(async_client, key: str, body: dict):
    return await async_client.post(
        COMPLETIONS,
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


# --- What reaches the model ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("upstream", "model", "how"),
    [
        ("openai_upstream", "openai:gpt-4.1-mini", "image_url"),
        ("anthropic_upstream", "anthropic:claude-haiku-4-5", "base64"),
    ],
)
async def test_a_data_url_image_reaches_the_model_in_its_sdks_form_resized(
    request, async_client, key, files, settings, upstream, model, how
):
    settings.CHAT_IMAGE_MAX_SIDE = 100
    fake = request.getfixturevalue(upstream)
    fake.script(text="A green square.")
    photo = files.small_image("JPEG", (300, 200))

    response = await post(
        async_client, key, {"model": model, "messages": [asking(image_part(data_url(photo)))]}
    )

    assert response.status_code == 200, response.content
    assert response.json()["choices"][0]["message"]["content"] == "A green square."
    (received,) = fake.requests
    assert received.images() == [(how, "JPEG", (100, 67))]
    assert "What is this?" in str(received.body)
    question = await Message.objects.aget(role="user")
    assert question.has_attachments
    stored = await Attachment.objects.aget(message=question)
    assert (stored.kind, stored.width, stored.height) == ("image", 100, 67)


@pytest.mark.django_db(transaction=True)
async def test_an_image_alone_is_a_message(async_client, key, files, openai_upstream):
    body = {
        "model": "openai:gpt-4.1-mini",
        "messages": [{"role": "user", "content": [image_part(data_url(files.small_image("PNG")))]}],
    }

    response = await post(async_client, key, body)

    assert response.status_code == 200, response.content
    assert [kind for kind, _format, _size in openai_upstream.requests[0].images()] == ["image_url"]


@pytest.mark.django_db(transaction=True)
async def test_earlier_turns_images_are_read_and_counted_once(
    async_client, key, files, openai_upstream, reads, settings
):
    settings.CHAT_UPLOAD_RATE_LIMIT = "2/h"  # each new image counts once, a resent one never
    first = data_url(files.small_image("PNG", (40, 30)))
    second = data_url(files.small_image("PNG", (50, 20)))
    third = data_url(files.small_image("PNG", (20, 10)))
    model = "openai:gpt-4.1-mini"
    turn_one = [asking(image_part(first), text="And this?")]
    turn_two = [*turn_one, {"role": "assistant", "content": "A field."}, asking(image_part(second))]
    turn_three = [*turn_two, {"role": "assistant", "content": "A lake."}, asking(image_part(first))]

    for messages in (turn_one, turn_two, turn_three):
        response = await post(async_client, key, {"model": model, "messages": messages})
        assert response.status_code == 200, response.content

    assert len(reads) == 2  # the first and the second image, once each
    sizes = [[size for _how, _format, size in r.images()] for r in openai_upstream.requests]
    assert sizes == [[(40, 30)], [(40, 30), (50, 20)], [(40, 30), (50, 20), (40, 30)]]
    # A third new image is a third upload: over the rate, in OpenAI's shape.
    response = await post(
        async_client, key, {"model": model, "messages": [*turn_three, asking(image_part(third))]}
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(reads) == 2


@pytest.mark.django_db(transaction=True)
async def test_a_body_larger_than_djangos_form_limit_is_taken_up_to_the_apis(
    async_client, key, files, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    settings.CHAT_API_MAX_BODY_BYTES = 200_000
    image = files.small_image("BMP", (120, 120))  # about 43 KB, refused as a format, after reading
    body = {"model": "demo:demo", "messages": [asking(image_part(data_url(image)))]}

    response = await post(async_client, key, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_image"

    settings.CHAT_API_MAX_BODY_BYTES = 20_000
    response = await post(async_client, key, body)
    assert response.status_code == 413
    assert "20,000 bytes" in response.json()["error"]["message"]


# --- Refusals ------------------------------------------------------------------------------------


def _refusal_cases(files) -> list[tuple[dict, dict, str, str, str]]:
    png = files.small_image("PNG")
    image = image_part(data_url(png))
    return [
        # (settings, message list, param, code, words)
        (
            {"CHAT_VISION_MODELS": ["anthropic:*"]},
            [asking(image)],
            "messages[0].content[1].image_url",
            "model_not_vision",
            "cannot see images",
        ),
        (
            {},
            [asking(image_part("data:image/png;base64,iVBOR$$w0KGgo="))],
            "messages[0].content[1].image_url",
            "invalid_base64",
            "not valid base64",
        ),
        (
            {},
            [asking(image_part(data_url(files.pdf([["Revenue grew."]]))))],
            "messages[0].content[1].image_url",
            "invalid_image",
            "is not an image",
        ),
        (
            {},
            [asking(image_part(data_url(b"MZ\x90\x00" + bytes(range(256)) * 4)))],
            "messages[0].content[1].image_url",
            "invalid_image",
            "was refused",
        ),
        (
            {},
            [asking(image_part(data_url(b"hello", "text/plain")))],
            "messages[0].content[1].image_url",
            "invalid_image_url",
            "not an image data URL",
        ),
        (
            {"CHAT_MAX_UPLOAD_BYTES": 40},
            [asking(image)],
            "messages[0].content[1].image_url",
            "image_too_large",
            "larger than the 40 bytes",
        ),
        (
            {"CHAT_MAX_FILES_PER_MESSAGE": 2},
            [asking(image, image, image)],
            "messages[0].content",
            "too_many_images",
            "at most 2 images",
        ),
        (
            {"CHAT_API_MAX_IMAGES": 2},
            [asking(image, image), {"role": "assistant", "content": "Two."}, asking(image)],
            "messages",
            "too_many_images",
            "the limit is 2",
        ),
        (
            {},
            [asking(), {"role": "assistant", "content": [image]}, asking()],
            "messages[1].content[0]",
            "unsupported_content",
            "only be sent in user messages",
        ),
        (
            {},
            [asking(image_part("https://example.com/cat.png"))],
            "messages[0].content[1].image_url",
            "image_url_not_allowed",
            "does not fetch image URLs",
        ),
        (
            {},
            [asking(image_part("file:///etc/passwd"))],
            "messages[0].content[1].image_url",
            "invalid_image_url",
            "must be a data URL",
        ),
        (
            {},
            [asking({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}})],
            "messages[0].content[1]",
            "unsupported_content",
            "audio and files are not supported",
        ),
    ]


@pytest.mark.django_db(transaction=True)
async def test_every_refusal_is_a_400_in_openais_shape_with_nothing_kept(
    async_client, key, files, settings, openai_upstream
):
    for overrides, messages, param, code, words in _refusal_cases(files):
        saved = {name: getattr(settings, name) for name in overrides}
        for name, value in overrides.items():
            setattr(settings, name, value)
        response = await post(
            async_client, key, {"model": "openai:gpt-4.1-mini", "messages": messages}
        )
        for name, value in saved.items():
            setattr(settings, name, value)
        assert response.status_code == 400, (code, response.content)
        error = response.json()["error"]
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error",
            param,
            code,
        ), error
        assert words in error["message"], error
    assert not await Conversation.objects.aexists()
    assert not await Attachment.objects.aexists()
    assert openai_upstream.requests == []


# --- Image URLs: the guarded fetch ---------------------------------------------------------------

_PRIVATE_V4 = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "192.0.2.0/24",
    "198.18.0.0/15",
]
_PUBLIC_V4 = ["8.8.8.0/24", "1.1.1.0/24", "93.184.216.0/24", "151.101.0.0/16"]


def _in(network: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
    net = ipaddress.ip_network(network)
    first, last = int(net.network_address), int(net.broadcast_address)
    return st.integers(first, last).map(ipaddress.IPv4Address)


def _forms(v4: ipaddress.IPv4Address) -> list[str]:
    """The same IPv4 address as IPv6 forms that carry it."""
    n = int(v4)
    return [
        str(v4),
        f"::ffff:{v4}",  # IPv4-mapped
        str(ipaddress.IPv6Address(n)),  # IPv4-compatible (deprecated)
        str(ipaddress.IPv6Address((0x64FF9B << 96) | n)),  # NAT64
        str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)),  # 6to4
        str(ipaddress.IPv6Address((0x20010000 << 96) | (0x08080808 << 64) | (n ^ 0xFFFFFFFF))),
    ]


@given(st.one_of(*[_in(net) for net in _PRIVATE_V4]), st.integers(0, 5))
def test_a_private_address_is_refused_in_every_form(v4, form):
    assert address_refused(_forms(v4)[form]) is not None


@given(st.one_of(*[_in(net) for net in _PUBLIC_V4]), st.sampled_from([0, 1, 3, 4]))
def test_a_public_address_is_allowed_in_the_forms_that_reach_it(v4, form):
    assert address_refused(_forms(v4)[form]) is None


@pytest.mark.parametrize(
    "address",
    ["::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "::", "64:ff9b:1::1"],
)
def test_ipv6_local_addresses_are_refused(address):
    assert address_refused(address) is not None


def test_a_public_ipv6_address_is_allowed():
    assert address_refused("2606:4700:4700::1111") is None


def _fetch(url: str, **kwargs) -> bytes:
    kwargs.setdefault("max_bytes", 100_000)
    kwargs.setdefault("timeout", 5.0)
    return asyncio.run(fetch_image(url, **kwargs))


def _loopback_spellings(octets: tuple[int, int, int]) -> st.SearchStrategy[str]:
    a, b, c = octets
    n = (127 << 24) | (a << 16) | (b << 8) | c
    return st.sampled_from(
        [
            f"127.{a}.{b}.{c}",
            str(n),  # one decimal number
            hex(n),  # 0x7f000001
            f"0177.{a}.{b}.{c}",  # octal first part
            f"127.{(a << 16) | (b << 8) | c}",  # two parts
            f"[::ffff:127.{a}.{b}.{c}]",
            "localhost",
        ]
    )


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.tuples(st.just(0), st.just(0), st.just(1)).flatmap(_loopback_spellings))
def test_the_local_server_is_never_reached_however_its_address_is_spelled(image_server, host):
    image_server.routes["/cat.png"] = (200, {"Content-Type": "image/png"}, b"png", 0.0)

    with pytest.raises(FetchRefused, match="loopback|not valid"):
        _fetch(image_server.url("/cat.png", host=host))

    assert image_server.hits == []


class Pinned(httpcore.AsyncNetworkBackend):
    """The network below the guard in these tests: a connection to a public test address goes to
    the local server instead (so a public host can be served here); it records each address."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connected: list[str] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connected.append(host)
        return await self._real.connect_tcp("127.0.0.1", self.port, timeout=timeout)

    async def sleep(self, seconds):
        await self._real.sleep(seconds)


def resolver(answers: dict[str, list[list[str]]], calls: list[str]):
    """A DNS resolver whose answers for a name change on each lookup (the last one repeats)."""

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        queue = answers.get(host, [[host]])  # an address literal is itself
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return resolve


def test_a_public_host_is_fetched_from_the_address_that_was_checked(image_server):
    image_server.routes["/cat.png"] = (200, {"Content-Type": "image/png"}, b"PNG bytes", 0.0)
    network, calls = Pinned(image_server.port), []
    # DNS rebinding: the first answer is public, every later one private.
    resolve = resolver({"images.example": [["93.184.216.34"], ["127.0.0.1"]]}, calls)

    data = _fetch("http://images.example/cat.png", resolve=resolve, inner=network)

    assert data == b"PNG bytes"
    assert calls == ["images.example"]  # resolved once
    assert network.connected == ["93.184.216.34"]  # to the checked address, not looked up again


def test_a_name_with_any_private_address_is_refused(image_server):
    network, calls = Pinned(image_server.port), []
    resolve = resolver({"images.example": [["93.184.216.34", "10.1.2.3"]]}, calls)

    with pytest.raises(FetchRefused, match="10.1.2.3: it is a private address"):
        _fetch("http://images.example/cat.png", resolve=resolve, inner=network)

    assert network.connected == [] and image_server.hits == []


@pytest.mark.parametrize(
    "location", ["http://127.0.0.1/cat.png", "http://internal.example/cat.png", "/self"]
)
def test_a_redirect_is_checked_again_and_limited(image_server, location):
    image_server.routes["/cat.png"] = (302, {"Location": location}, b"", 0.0)
    image_server.routes["/self"] = (301, {"Location": "/self"}, b"", 0.0)
    network, calls = Pinned(image_server.port), []
    answers = {"images.example": [["93.184.216.34"]], "internal.example": [["192.168.1.20"]]}

    with pytest.raises(FetchRefused, match="loopback|private|more than 3 times"):
        _fetch("http://images.example/cat.png", resolve=resolver(answers, calls), inner=network)

    assert set(network.connected) == {"93.184.216.34"}
    assert len(image_server.hits) == (4 if location == "/self" else 1)


def test_a_fetch_is_limited_in_size_and_time(image_server):
    image_server.routes["/big.png"] = (200, {}, b"x" * 5000, 0.0)
    image_server.routes["/slow.png"] = (200, {}, b"x", 3.0)
    network, calls = Pinned(image_server.port), []
    resolve = resolver({"images.example": [["93.184.216.34"]]}, calls)

    with pytest.raises(FetchRefused, match="larger than 1,000 bytes"):
        _fetch("http://images.example/big.png", resolve=resolve, inner=network, max_bytes=1000)
    with pytest.raises(FetchRefused, match="within 0.5 seconds"):
        _fetch("http://images.example/slow.png", resolve=resolve, inner=network, timeout=0.5)


@pytest.mark.django_db(transaction=True)
async def test_the_api_refuses_an_image_url_on_a_private_address_when_fetching_is_on(
    async_client, key, settings, image_server, files
):
    settings.CHAT_API_FETCH_IMAGE_URLS = True
    image_server.routes["/cat.png"] = (200, {}, files.small_image("PNG"), 0.0)
    url = image_server.url("/cat.png")

    response = await post(
        async_client, key, {"model": "demo:demo", "messages": [asking(image_part(url))]}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "image_url_refused" and "loopback" in error["message"]
    assert error["param"] == "messages[0].content[1].image_url"
    assert image_server.hits == []
    assert not await Conversation.objects.aexists()


@pytest.mark.django_db(transaction=True)
async def test_with_fetching_on_an_image_url_on_a_public_host_reaches_the_model(
    async_client, key, settings, image_server, files, openai_upstream, monkeypatch
):
    """The public host is this test's own server behind a name the test's resolver answers with
    a public address (nothing leaves the machine): what is fetched is read like any image."""
    settings.CHAT_API_FETCH_IMAGE_URLS = True
    settings.CHAT_VISION_MODELS = ["openai:*"]
    image_server.routes["/cat.jpg"] = (200, {}, files.small_image("JPEG", (90, 60)), 0.0)
    image_server.routes["/moved"] = (302, {"Location": "/cat.jpg"}, b"", 0.0)
    network, calls = Pinned(image_server.port), []
    resolve = resolver({"images.example": [["93.184.216.34"]]}, calls)
    real_fetch = api_images.fetch_image

    async def through_test_network(url, **kwargs):
        return await real_fetch(url, resolve=resolve, inner=network, **kwargs)

    monkeypatch.setattr(api_images, "fetch_image", through_test_network)
    # http: the test server speaks plain HTTP (an https URL is fetched the same way, with TLS).
    body = {
        "model": "openai:gpt-4.1-mini",
        "messages": [asking(image_part("http://images.example/moved"))],
    }

    response = await post(async_client, key, body)

    assert response.status_code == 200, response.content
    assert openai_upstream.requests[0].images() == [("image_url", "JPEG", (90, 60))]
    assert image_server.hits == ["/moved", "/cat.jpg"]
    # One connection per hop (the test server closes each), each to the checked address.
    assert network.connected == ["93.184.216.34", "93.184.216.34"]
