"""The API client against the real sandbox: how answers are classified."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glossi_watch.api import GlossiClient, job_request_body
from glossi_watch.config import ApiConfig, FolderConfig, KeySource, Secret
from glossi_watch.errors import (
    AuthError,
    ExpiredUrlError,
    PermanentApiError,
    TransientApiError,
    TransientUploadError,
)
from glossi_watch.sandbox import Sandbox

KEY = "glsi_client_test"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY, data_dir=tmp_path / "data") as running:
        yield running


def client_for(sandbox: Sandbox, key: str = KEY) -> GlossiClient:
    config = ApiConfig(
        base_url=sandbox.api_base_url,
        key_source=KeySource(inline_key=Secret(key)),
        read_timeout_seconds=10,
    )
    return GlossiClient(config, Secret(key))


def folder(tmp_path: Path) -> FolderConfig:
    return FolderConfig(
        path=tmp_path, done_dir=tmp_path / "d", failed_dir=tmp_path / "f"
    )


def md5_of(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_a_wrong_key_is_an_auth_error(sandbox: Sandbox, tmp_path: Path) -> None:
    client = client_for(sandbox, key="glsi_wrong")
    try:
        with pytest.raises(AuthError) as caught:
            client.create_job(job_request_body(folder(tmp_path), ["a.glb"]))
    finally:
        client.close()

    assert caught.value.status_code == 401
    assert "glsi_wrong" not in str(caught.value)


def test_a_refused_body_is_permanent(sandbox: Sandbox) -> None:
    client = client_for(sandbox)
    try:
        with pytest.raises(PermanentApiError) as caught:
            client.create_job({"models": []})
    finally:
        client.close()

    assert caught.value.status_code == 400 and caught.value.body


def test_an_html_answer_is_transient(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.add_fault("html", route="create_job", count=1)
    client = client_for(sandbox)
    try:
        with pytest.raises(TransientApiError, match="not JSON"):
            client.create_job(job_request_body(folder(tmp_path), ["a.glb"]))
    finally:
        client.close()


def test_an_expired_url_and_a_bad_digest_are_told_apart(
    sandbox: Sandbox, tmp_path: Path, samples: Path
) -> None:
    client = client_for(sandbox)
    data = (samples / "Box.glb").read_bytes()
    fd = os.open(samples / "Box.glb", os.O_RDONLY)
    try:
        job = client.create_job(job_request_body(folder(tmp_path), ["Box.glb"]))
        url = job.models[0].upload_url
        with pytest.raises(TransientUploadError) as digest:
            client.upload(url, fd, size=len(data), md5_base64=md5_of(b"other"))
        client.upload(url, fd, size=len(data), md5_base64=md5_of(data))
        sandbox.add_fault("url_ttl", seconds=1)
        short = client.create_job(job_request_body(folder(tmp_path), ["Box.glb"]))
        time.sleep(2.5)
        with pytest.raises(ExpiredUrlError):
            client.upload(
                short.models[0].upload_url, fd, size=len(data), md5_base64=md5_of(data)
            )
    finally:
        os.close(fd)
        client.close()

    assert digest.value.code == "BadDigest"
