"""Permissions-Policy on every page; `Cache-Control: private, no-store` on everything that shows
a person's conversations (issue 18). Before: no Permissions-Policy anywhere, and the signed-in
conversation page and the JSON export could be kept by a shared cache or the browser's disk."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chat.conversations.reads import Visitor
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def visitor_of(client_visitor_id):
    return lambda client, user=None: _visitor_of(client, client_visitor_id, user)


def _visitor_of(client, client_visitor_id, user=None) -> Visitor:
    from django.contrib.auth.models import AnonymousUser

    client.get("/streaming-demo")
    if user is not None:
        return Visitor(user=user, visitor_id="")
    return Visitor(user=AnonymousUser(), visitor_id=client_visitor_id(client))


def no_store(response) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    return {"private", "no-store"} <= directives


@pytest.fixture
def ada_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("ada"))
    return client


def test_every_page_sends_a_permissions_policy(client, ada_client):
    responses = [
        client.get("/streaming-demo"),
        client.get("/accounts/login/"),
        client.get("/no-such-page"),
        client.get("/healthz"),
        ada_client.get("/streaming-demo"),
        ada_client.get("/settings/api-keys"),
    ]
    for response in responses:
        policy = response.get("Permissions-Policy", "")
        assert "camera=()" in policy and "microphone=()" in policy, response
        assert "geolocation=()" in policy


def test_conversation_pages_and_exports_are_private_and_never_stored(ada_client, visitor_of):
    user = User.objects.get(username="ada")
    started = services.reply_start(
        visitor=visitor_of(ada_client, user=user),
        conversation_id=None,
        text="hi",
        model_choice="demo:demo",
    )
    base = f"/streaming-demo/c/{started.conversation.pk}"

    for path in ("/streaming-demo", base, f"{base}/export.json", f"{base}/export.md"):
        response = ada_client.get(path)
        assert response.status_code == 200, path
        assert no_store(response), (path, response.get("Cache-Control"))


def test_an_anonymous_visitors_conversation_is_private_too(client, visitor_of):
    started = services.reply_start(
        visitor=visitor_of(client), conversation_id=None, text="hi", model_choice="demo:demo"
    )

    response = client.get(f"/streaming-demo/c/{started.conversation.pk}")

    assert response.status_code == 200 and no_store(response)


def test_the_apis_stored_completions_are_private_too(client):
    from chat.api.keys import api_key_create

    key = api_key_create(user=User.objects.create_user("bob"), name="k")[1]

    response = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})

    assert response.status_code == 200 and no_store(response)
