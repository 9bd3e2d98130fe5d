"""The sandbox's storage server: presigned PUTs accepted and refused as S3 does.

Uploads go over real HTTP to a real sandbox on 127.0.0.1; requests httpx will
not send (no Content-Length, chunked, a short body) go over a raw socket.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import time
import tracemalloc
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from glossi_watch.glb import write_synthetic_glb
from glossi_watch.sandbox import Sandbox

API_KEY = "glsi_storage_test_key"
GLB_TYPE = {"Content-Type": "model/gltf-binary"}


@pytest.fixture
def local_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox in this process, on free ports, closed after the test."""
    with Sandbox(api_key=API_KEY, data_dir=tmp_path / "data") as sb:
        yield sb


@pytest.fixture
def box(samples: Path) -> bytes:
    return (samples / "Box.glb").read_bytes()


def new_upload_url(sandbox: Sandbox, file_name: str = "Box.glb") -> str:
    """Create a one-model job and return its presigned upload URL."""
    body = {"models": [{"fileName": file_name, "fileType": "glb"}]}
    response = httpx.post(
        sandbox.api_base_url + "/jobs", json=body, headers={"X-API-Key": API_KEY}
    )
    response.raise_for_status()
    url: str = response.json()["models"][0]["uploadUrl"]
    return url


def stored_size(sandbox: Sandbox) -> Any:
    jobs = httpx.get(f"{sandbox.root_url}/_sandbox/jobs").json()["jobs"]
    return jobs[-1]["models"][0]["size"]


def assert_s3_error(status: int, content_type: str, body: bytes, expected: int) -> str:
    """Check an S3 XML error response and return its Code."""
    assert status == expected, body
    assert content_type == "application/xml"
    assert body.startswith(b"<?xml")
    error = ElementTree.fromstring(body)
    assert error.tag == "Error"
    assert error.findtext("Message")
    assert error.findtext("RequestId")
    return error.findtext("Code") or ""


def s3_code(response: httpx.Response, expected: int) -> str:
    content_type = response.headers.get("content-type", "")
    return assert_s3_error(
        response.status_code, content_type, response.content, expected
    )


def raw_put(
    url: str, headers: list[str], body: bytes = b"", *, half_close: bool = False
) -> tuple[http.client.HTTPResponse, bytes, bytes]:
    """Send a PUT as raw bytes; return the response, its body and what followed."""
    parts = urlsplit(url)
    request = f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    request += "".join(f"{line}\r\n" for line in headers) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(request.encode() + body)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(conn)
        response.begin()
        content = response.read()
        after = conn.recv(1024)
    return response, content, after


class TestAcceptedUploads:
    def test_a_put_returns_200_with_an_empty_body_and_the_md5_etag(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """A correct PUT succeeds the way S3 answers it."""
        response = httpx.put(
            new_upload_url(local_sandbox), content=box, headers=GLB_TYPE
        )

        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["content-length"] == "0"
        assert response.headers["etag"] == f'"{hashlib.md5(box).hexdigest()}"'
        assert stored_size(local_sandbox) == len(box)

    def test_a_second_put_replaces_the_object(
        self, local_sandbox: Sandbox, box: bytes, samples: Path
    ) -> None:
        """Uploading again to the same URL stores the new bytes."""
        url = new_upload_url(local_sandbox)
        other = (samples / "BoxTextured.glb").read_bytes()
        httpx.put(url, content=box, headers=GLB_TYPE).raise_for_status()

        httpx.put(url, content=other, headers=GLB_TYPE).raise_for_status()

        assert stored_size(local_sandbox) == len(other)

    def test_a_matching_content_md5_is_accepted(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """A Content-MD5 that matches the body does not get in the way."""
        digest = base64.b64encode(hashlib.md5(box).digest()).decode()
        headers = {**GLB_TYPE, "Content-MD5": digest}

        response = httpx.put(
            new_upload_url(local_sandbox), content=box, headers=headers
        )

        assert response.status_code == 200

    def test_an_odd_file_name_is_quoted_in_the_url_and_uploads(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """Spaces, slashes and accents in a file name survive the presigned URL."""
        url = new_upload_url(local_sandbox, "my chair/é #1?.glb")

        response = httpx.put(url, content=box, headers=GLB_TYPE)

        assert response.status_code == 200
        assert urlsplit(url).path.endswith("/my%20chair%2F%C3%A9%20%231%3F.glb")

    def test_a_large_upload_is_streamed_not_held_in_memory(
        self, local_sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """A 48 MiB upload is stored whole while memory grows by far less."""
        source = tmp_path / "large.glb"
        write_synthetic_glb(source, 48 * 1024 * 1024, seed=3)
        url = new_upload_url(local_sandbox, "large.glb")

        tracemalloc.start()
        try:
            with source.open("rb") as stream:
                response = httpx.put(url, content=stream, headers=GLB_TYPE, timeout=60)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert response.status_code == 200
        assert stored_size(local_sandbox) == source.stat().st_size
        assert peak < 16 * 1024 * 1024


class TestExpectContinue:
    def test_an_accepted_put_gets_100_continue_before_its_body(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """A client that waits for 100 Continue (as curl does) gets it, then 200."""
        parts = urlsplit(new_upload_url(local_sandbox))
        head = (
            f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: model/gltf-binary\r\nContent-Length: {len(box)}\r\n"
            "Expect: 100-continue\r\n\r\n"
        )
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
            conn.sendall(head.encode())
            interim = conn.recv(1024)
            conn.sendall(box)
            response = http.client.HTTPResponse(conn)
            response.begin()
            response.read()

        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        assert response.status == 200

    def test_a_refused_put_is_answered_before_its_body_is_sent(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """With Expect: 100-continue, a refusal comes at once and the body stays."""
        url = new_upload_url(local_sandbox)
        headers = [
            "Content-Type: text/plain",
            f"Content-Length: {len(box)}",
            "Expect: 100-continue",
        ]

        response, body, after = raw_put(url, headers)

        code = assert_s3_error(
            response.status, response.getheader("Content-Type", ""), body, 403
        )
        assert code == "SignatureDoesNotMatch"
        assert after == b""


class TestRefusedUploads:
    @pytest.mark.parametrize(
        "content_type", ["application/octet-stream", "model/gltf-binary; x=1", None]
    )
    def test_a_content_type_other_than_the_signed_one_is_signature_does_not_match(
        self, local_sandbox: Sandbox, box: bytes, content_type: str | None
    ) -> None:
        """S3 signs the Content-Type; any other value breaks the signature."""
        headers = {} if content_type is None else {"Content-Type": content_type}

        response = httpx.put(
            new_upload_url(local_sandbox), content=box, headers=headers
        )

        assert s3_code(response, 403) == "SignatureDoesNotMatch"
        assert stored_size(local_sandbox) is None

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("X-Amz-Signature", "0" * 64),
            ("X-Amz-Signature", "é"),
            ("X-Amz-Expires", "86400"),
            ("X-Amz-Credential", "AKIAOTHER/20250101/us-east-1/s3/aws4_request"),
        ],
    )
    def test_a_tampered_query_is_signature_does_not_match(
        self, local_sandbox: Sandbox, box: bytes, name: str, value: str
    ) -> None:
        """Changing any signed query parameter invalidates the URL."""
        url = httpx.URL(new_upload_url(local_sandbox))
        tampered = url.copy_set_param(name, value)

        response = httpx.put(tampered, content=box, headers=GLB_TYPE)

        assert s3_code(response, 403) == "SignatureDoesNotMatch"

    def test_one_models_signature_does_not_open_another_path(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """The path is signed: a URL's query cannot be reused for another key."""
        first = urlsplit(new_upload_url(local_sandbox, "a.glb"))
        second = urlsplit(new_upload_url(local_sandbox, "b.glb"))
        mixed = f"{local_sandbox.storage_url}{second.path}?{first.query}"

        response = httpx.put(mixed, content=box, headers=GLB_TYPE)

        assert s3_code(response, 403) == "SignatureDoesNotMatch"

    def test_an_expired_url_is_access_denied(self, tmp_path: Path, box: bytes) -> None:
        """Past its lifetime a URL is refused with S3's 'Request has expired'."""
        with Sandbox(api_key=API_KEY, data_dir=tmp_path, url_ttl_seconds=0) as sandbox:
            response = httpx.put(new_upload_url(sandbox), content=box, headers=GLB_TYPE)

        assert s3_code(response, 403) == "AccessDenied"
        assert "Request has expired" in response.text

    def test_a_url_works_within_its_lifetime_and_not_after(
        self, tmp_path: Path, box: bytes
    ) -> None:
        """A 3-second URL takes a PUT at once and refuses one 4 seconds later."""
        with (
            Sandbox(api_key=API_KEY, data_dir=tmp_path, url_ttl_seconds=3) as sandbox,
            httpx.Client(headers=GLB_TYPE) as client,
        ):
            url = new_upload_url(sandbox)
            fresh = client.put(url, content=box)
            time.sleep(4.0)
            stale = client.put(url, content=box)

        assert fresh.status_code == 200
        assert s3_code(stale, 403) == "AccessDenied"

    def test_the_connection_stays_usable_after_a_refused_put(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """A refused PUT's body is drained, so a retry can reuse the connection."""
        url = new_upload_url(local_sandbox)
        with httpx.Client() as client:
            refused = client.put(url, content=box, headers={"Content-Type": "x/y"})
            accepted = client.put(url, content=box, headers=GLB_TYPE)

        assert refused.status_code == 403
        assert accepted.status_code == 200

    def test_a_put_without_content_length_is_missing_content_length(
        self, local_sandbox: Sandbox
    ) -> None:
        """S3 needs Content-Length on a PUT and answers 411 without it."""
        url = new_upload_url(local_sandbox)

        response, body, after = raw_put(url, ["Content-Type: model/gltf-binary"])

        code = assert_s3_error(
            response.status, response.getheader("Content-Type", ""), body, 411
        )
        assert code == "MissingContentLength"
        assert after == b""

    def test_a_chunked_put_is_not_implemented_and_the_connection_closes(
        self, local_sandbox: Sandbox
    ) -> None:
        """Transfer-Encoding: chunked gets 501 without its body being read."""
        url = new_upload_url(local_sandbox)
        headers = ["Content-Type: model/gltf-binary", "Transfer-Encoding: chunked"]

        response, body, after = raw_put(url, headers, b"5\r\nhello\r\n0\r\n\r\n")

        code = assert_s3_error(
            response.status, response.getheader("Content-Type", ""), body, 501
        )
        assert code == "NotImplemented"
        assert response.getheader("Connection") == "close"
        assert after == b""

    def test_a_body_over_5_gib_is_entity_too_large(
        self, local_sandbox: Sandbox
    ) -> None:
        """A PUT that declares more than 5 GiB is refused before any byte is read."""
        url = new_upload_url(local_sandbox)
        headers = [
            "Content-Type: model/gltf-binary",
            f"Content-Length: {5 * 2**30 + 1}",
        ]

        response, body, _ = raw_put(url, headers)

        code = assert_s3_error(
            response.status, response.getheader("Content-Type", ""), body, 400
        )
        assert code == "EntityTooLarge"

    def test_a_body_shorter_than_its_content_length_is_incomplete_body(
        self, local_sandbox: Sandbox, box: bytes, tmp_path: Path
    ) -> None:
        """A client that stops early gets IncompleteBody and nothing is stored."""
        url = new_upload_url(local_sandbox)
        headers = ["Content-Type: model/gltf-binary", f"Content-Length: {len(box)}"]

        response, body, _ = raw_put(url, headers, box[:100], half_close=True)

        code = assert_s3_error(
            response.status, response.getheader("Content-Type", ""), body, 400
        )
        assert code == "IncompleteBody"
        assert stored_size(local_sandbox) is None
        assert not list((tmp_path / "data" / "objects").iterdir())

    def test_a_content_md5_that_does_not_match_is_bad_digest(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """A body whose MD5 differs from Content-MD5 is refused and not stored."""
        wrong = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
        headers = {**GLB_TYPE, "Content-MD5": wrong}

        response = httpx.put(
            new_upload_url(local_sandbox), content=box, headers=headers
        )

        assert s3_code(response, 400) == "BadDigest"
        assert stored_size(local_sandbox) is None

    def test_a_content_md5_that_is_not_base64_md5_is_invalid_digest(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """A malformed Content-MD5 is refused as S3 does."""
        headers = {**GLB_TYPE, "Content-MD5": "not-an-md5"}

        response = httpx.put(
            new_upload_url(local_sandbox), content=box, headers=headers
        )

        assert s3_code(response, 400) == "InvalidDigest"

    @pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
    def test_other_methods_are_method_not_allowed(
        self, local_sandbox: Sandbox, method: str
    ) -> None:
        """The storage takes PUTs only."""
        response = httpx.request(method, new_upload_url(local_sandbox))

        assert s3_code(response, 405) == "MethodNotAllowed"

    def test_a_path_outside_the_bucket_is_no_such_bucket(
        self, local_sandbox: Sandbox, box: bytes
    ) -> None:
        """Only the sandbox's bucket exists."""
        response = httpx.put(
            local_sandbox.storage_url + "/other-bucket/x.glb",
            content=box,
            headers=GLB_TYPE,
        )

        assert s3_code(response, 404) == "NoSuchBucket"
