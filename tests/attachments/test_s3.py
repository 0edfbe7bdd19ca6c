"""Attachments in an S3-compatible bucket (django-storages' S3Storage), against a real S3 server
the suite starts: moto's server mode on a free loopback port. Runs on SQLite and PostgreSQL alike
(the files are in the bucket; only the rows are in the database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from moto.server import ThreadedMotoServer

from chat.attachments.store import attachments_sweep
from chat.models import Attachment
from chatsite.settings import s3_storage

pytestmark = pytest.mark.django_db(transaction=True)

UPLOAD = "/streaming-demo/attachments"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "chatsite-test", "AWS_SECRET_ACCESS_KEY": "chatsite-secret"}


@pytest.fixture(scope="session")
def s3_server(free_port) -> Iterator[str]:
    """A moto S3 server for the session: its endpoint URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server, settings, monkeypatch, media_root):
    """A fresh bucket of this test's own, and attachments stored in it (no local media/)."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"chatsite-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(name, endpoint_url=s3_server)}
    return client, name


def _keys(bucket) -> list[str]:
    client, name = bucket
    listing = client.list_objects_v2(Bucket=name)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _body(bucket, key: str) -> bytes:
    client, name = bucket
    return client.get_object(Bucket=name, Key=key)["Body"].read()


def _visitor() -> Client:
    client = Client()
    client.get("/streaming-demo")
    return client


def _upload(client: Client, name: str, data: bytes) -> dict:
    response = client.post(UPLOAD, {"file": SimpleUploadedFile(name, data)})
    assert response.status_code == 201, response.content
    return response.json()


def test_an_upload_is_kept_in_the_bucket_by_its_hash_and_served_from_it(
    bucket, files, media_root: Path
):
    client = _visitor()
    photo = _upload(client, "cat.png", files.small_image("PNG", (400, 300)))
    notes = _upload(client, "notes.md", b"# Plan\n\nShip on Friday.\n")

    row = Attachment.objects.get(pk=photo["id"])
    keys = _keys(bucket)
    assert keys == sorted(
        [row.storage_name, row.thumbnail_name, Attachment.objects.get(pk=notes["id"]).storage_name]
    )
    assert row.storage_name == f"attachments/{row.sha256[:2]}/{row.sha256}.png"
    assert not media_root.exists() or not any(media_root.rglob("*.*"))  # nothing stored locally

    download = client.get(photo["url"])
    assert download.status_code == 200
    assert download.content == _body(bucket, row.storage_name)
    assert download["Content-Disposition"] == 'attachment; filename="cat.png"'
    assert client.get(photo["thumbnail_url"]).content == _body(bucket, row.thumbnail_name)
    assert client.get(notes["url"]).content == b"# Plan\n\nShip on Friday.\n"

    # The same bytes again (another person's, even) are stored once.
    _upload(_visitor(), "same.md", b"# Plan\n\nShip on Friday.\n")
    assert _keys(bucket) == keys


def test_an_unsent_upload_swept_takes_its_objects_unless_another_row_shares_them(bucket, files):
    client = _visitor()
    kept = _upload(client, "a.md", b"shared bytes\n")
    old = _upload(client, "photo.png", files.small_image("PNG", (400, 300)))
    _upload(client, "b.md", b"shared bytes\n")
    Attachment.objects.filter(pk__in=[kept["id"], old["id"]]).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    shared_name = Attachment.objects.get(pk=kept["id"]).storage_name

    assert attachments_sweep() == 2

    assert _keys(bucket) == [shared_name]  # the photo and its thumbnail are gone
    assert client.get(old["url"]).status_code == 404


def test_the_settings_store_attachments_in_the_bucket_the_environment_names(
    s3_server, tmp_path, manage_shell, app_env
):
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    name = f"chatsite-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    env = app_env(
        tmp_path,
        CHAT_S3_BUCKET=name,
        CHAT_S3_ENDPOINT_URL=s3_server,
        CHAT_S3_REGION="us-east-1",
        CHAT_S3_PREFIX="chatsite/",
        **CREDENTIALS,
    )

    saved = manage_shell(
        env,
        "from django.core.files.base import ContentFile\n"
        "from django.core.files.storage import default_storage as s\n"
        "print(s.save('attachments/ab/probe.txt', ContentFile(b'probe')))",
    )

    assert saved.splitlines()[-1] == "attachments/ab/probe.txt"
    listing = client.list_objects_v2(Bucket=name)
    assert [item["Key"] for item in listing["Contents"]] == ["chatsite/attachments/ab/probe.txt"]
    assert not (tmp_path / "media").exists()
