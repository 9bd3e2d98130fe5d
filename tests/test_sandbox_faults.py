"""Faults of the sandbox: each kind, switched at run time, from Python and the CLI.

Every test drives a real sandbox on 127.0.0.1 with httpx, or with a raw socket
where the connection itself is the point (resets, stalls). Timing is asserted
from below only, so that a slow machine cannot fail a test.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import os
import signal
import socket
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from glossi_watch.sandbox import Sandbox, command
from glossi_watch.sandbox.api import ApiHandler
from glossi_watch.sandbox.errors import InvalidFault
from glossi_watch.sandbox.fault_specs import ROUTES, FaultSpec
from glossi_watch.sandbox.uploads import UploadHandler
from tests.harness import sandbox_command_process, wait_for

API_KEY = "glsi_fault_test_key_0123"
KEYED = {"X-API-Key": API_KEY}
GLB_TYPE = {"Content-Type": "model/gltf-binary"}
FAULT_ROUTES = {"list_faults", "add_fault", "clear_faults", "remove_fault"}


@pytest.fixture
def local_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox in this process, on free ports, closed after the test."""
    with Sandbox(api_key=API_KEY, data_dir=tmp_path / "data", step_seconds=0.05) as sb:
        yield sb


@pytest.fixture
def api(local_sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=local_sandbox.api_base_url, headers=KEYED, timeout=30
    ) as client:
        yield client


@pytest.fixture
def box(samples: Path) -> bytes:
    return (samples / "Box.glb").read_bytes()


def create_job(api: httpx.Client, *names: str) -> dict[str, Any]:
    models = [{"fileName": name, "fileType": "glb"} for name in names or ("a.glb",)]
    response = api.post("/jobs", json={"models": models})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def put(url: str, data: bytes, *, timeout: float = 30) -> httpx.Response:
    return httpx.put(url, content=data, headers=GLB_TYPE, timeout=timeout)


def add_fault(sandbox: Sandbox, **document: Any) -> dict[str, Any]:
    """Add a fault through the run-time route, as a test in another process would."""
    response = httpx.post(f"{sandbox.root_url}/_sandbox/faults", json=document)
    assert response.status_code == 201, response.text
    fault: dict[str, Any] = response.json()
    return fault


def listed_faults(sandbox: Sandbox) -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = httpx.get(
        f"{sandbox.root_url}/_sandbox/faults"
    ).json()["faults"]
    return faults


def logged(sandbox: Sandbox, path_part: str) -> list[dict[str, Any]]:
    """The logged requests whose path contains ``path_part``, oldest first."""
    records = httpx.get(f"{sandbox.root_url}/_sandbox/requests").json()["requests"]
    return [record for record in records if path_part in record["path"]]


def stored_model(sandbox: Sandbox) -> dict[str, Any]:
    jobs = httpx.get(f"{sandbox.root_url}/_sandbox/jobs").json()["jobs"]
    model: dict[str, Any] = jobs[-1]["models"][0]
    return model


def raw_connection(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def raw_get(path: str, host: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {API_KEY}\r\n\r\n"
    ).encode()


def s3_error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/xml"
    error = ElementTree.fromstring(response.content)
    assert error.tag == "Error" and error.findtext("Message")
    return error.findtext("Code") or ""


class TestStatusFaults:
    def test_a_status_fault_answers_count_times_then_the_route_runs(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """Two 503s with JSON errors and Retry-After; the third create succeeds."""
        local_sandbox.add_fault(
            "status", route="create_job", status=503, count=2, retry_after=5
        )

        answers = [api.post("/jobs", json={"models": []}) for _ in range(2)]
        created = create_job(api)

        for answer in answers:
            assert answer.status_code == 503
            assert answer.headers["content-type"] == "application/json"
            assert answer.json()["error"] == "service_unavailable"
            assert answer.json()["message"]
            assert answer.headers["retry-after"] == "5"
        assert created["status"] == "AWAITING_UPLOADS"
        records = logged(local_sandbox, "/api/v1/jobs")
        assert [record["status"] for record in records] == [503, 503, 201]
        assert [record["fault"] for record in records] == ["status", "status", None]

    @pytest.mark.parametrize(
        ("status", "code"), [(503, "SlowDown"), (500, "InternalError")]
    )
    def test_an_upload_status_fault_answers_with_an_s3_xml_error(
        self, local_sandbox: Sandbox, api: httpx.Client, status: int, code: str
    ) -> None:
        """The storage refuses as S3 does; the next PUT is stored."""
        url = create_job(api)["models"][0]["uploadUrl"]
        local_sandbox.add_fault("status", route="upload", status=status, count=1)

        refused = put(url, b"first try")
        accepted = put(url, b"second try")

        assert refused.status_code == status
        assert s3_error_code(refused) == code
        assert accepted.status_code == 200
        assert stored_model(local_sandbox)["size"] == len(b"second try")

    def test_retry_after_can_be_an_http_date_ahead_of_now(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """retry_after_date_seconds becomes an HTTP date that many seconds ahead."""
        add_fault(
            local_sandbox,
            kind="status",
            route="api",
            status=429,
            retry_after_date_seconds=30,
        )

        before = time.time()
        response = api.get("/jobs/any")

        assert response.status_code == 429
        assert response.json()["error"] == "too_many_requests"
        when = email.utils.parsedate_to_datetime(response.headers["retry-after"])
        assert before + 29 <= when.timestamp() <= before + 300

    def test_retry_after_can_be_a_given_http_date(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """An HTTP date given as retry_after is sent as it is."""
        date = "Wed, 21 Oct 2015 07:28:00 GMT"
        add_fault(
            local_sandbox, kind="status", route="any", status=502, retry_after=date
        )

        response = api.post("/jobs", json={})

        assert response.status_code == 502
        assert response.json()["error"] == "bad_gateway"
        assert response.headers["retry-after"] == date


class TestLatencyFaults:
    def test_latency_delays_the_request_which_then_succeeds(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """A one-second latency fault makes the answer take at least a second."""
        job = create_job(api)
        local_sandbox.add_fault("latency", route="get_job", seconds=1.0, count=1)

        started = time.monotonic()
        response = api.get(f"/jobs/{job['jobId']}")
        took = time.monotonic() - started

        assert response.status_code == 200
        assert response.json()["status"] == "AWAITING_UPLOADS"
        assert took >= 1.0
        [record] = logged(local_sandbox, f"/jobs/{job['jobId']}")
        assert record["status"] == 200 and record["fault"] == "latency"


class TestResetFaults:
    def test_a_reset_mid_upload_fails_the_client_and_keeps_the_earlier_object(
        self, local_sandbox: Sandbox, api: httpx.Client, box: bytes
    ) -> None:
        """The client gets a connection error; the stored object is unchanged."""
        url = create_job(api)["models"][0]["uploadUrl"]
        put(url, box).raise_for_status()
        local_sandbox.add_fault("reset", route="upload", after_bytes=65536, count=1)

        with pytest.raises((httpx.NetworkError, httpx.RemoteProtocolError)):
            put(url, os.urandom(1024 * 1024))

        model = stored_model(local_sandbox)
        assert model["size"] == len(box)
        assert model["sha256"] == hashlib.sha256(box).hexdigest()
        first, reset = logged(local_sandbox, "/glossi-sandbox-uploads/")
        assert first["status"] == 200 and first["fault"] is None
        assert reset["status"] is None and reset["fault"] == "reset"

    def test_an_api_reset_cuts_the_connection_without_an_answer(
        self, local_sandbox: Sandbox
    ) -> None:
        """The API request is answered with a TCP reset, not a response."""
        local_sandbox.add_fault("reset", route="api")
        host = urlsplit(local_sandbox.root_url).netloc

        with raw_connection(local_sandbox.root_url) as connection:
            connection.sendall(raw_get("/api/v1/jobs/x", host))
            with pytest.raises(ConnectionResetError):
                connection.recv(1024)

        [record] = logged(local_sandbox, "/api/v1/jobs/x")
        assert record["status"] is None and record["fault"] == "reset"


class TestStallFaults:
    def test_a_stalled_api_request_times_the_client_out(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """With a 2 s stall, a client waiting 0.5 s times out."""
        local_sandbox.add_fault("stall", route="create_job", seconds=2.0)

        with pytest.raises(httpx.TimeoutException):
            api.post("/jobs", json={"models": []}, timeout=0.5)

    def test_after_the_stall_the_connection_closes_without_an_answer(
        self, local_sandbox: Sandbox
    ) -> None:
        """The stalled connection ends with a close, no earlier than the stall."""
        local_sandbox.add_fault("stall", route="get_job", seconds=1.0)
        host = urlsplit(local_sandbox.root_url).netloc

        with raw_connection(local_sandbox.root_url) as connection:
            started = time.monotonic()
            connection.sendall(raw_get("/api/v1/jobs/x", host))
            answer = connection.recv(1024)
            took = time.monotonic() - started

        assert answer == b""
        assert took >= 1.0
        [record] = logged(local_sandbox, "/api/v1/jobs/x")
        assert record["status"] is None and record["fault"] == "stall"

    def test_a_stalled_upload_stores_nothing(
        self, local_sandbox: Sandbox, api: httpx.Client, box: bytes
    ) -> None:
        """The stall reads part of the body, never stores it, and closes."""
        url = create_job(api)["models"][0]["uploadUrl"]
        put(url, box).raise_for_status()
        local_sandbox.add_fault("stall", route="upload", seconds=2.0, after_bytes=65536)

        with pytest.raises(httpx.TimeoutException):
            put(url, os.urandom(600_000), timeout=0.5)
        time.sleep(2.5)

        model = stored_model(local_sandbox)
        assert model["size"] == len(box)
        assert model["sha256"] == hashlib.sha256(box).hexdigest()

    def test_faults_can_be_changed_while_a_request_is_stalled(
        self, local_sandbox: Sandbox
    ) -> None:
        """A stalled request does not block the fault routes."""
        local_sandbox.add_fault("stall", route="get_job", seconds=60.0)
        host = urlsplit(local_sandbox.root_url).netloc

        with raw_connection(local_sandbox.root_url) as connection:
            connection.sendall(raw_get("/api/v1/jobs/x", host))
            wait_for(lambda: logged(local_sandbox, "/api/v1/jobs/x")[0]["fault"])
            added = add_fault(local_sandbox, kind="html", route="create_job")
            listed = listed_faults(local_sandbox)
            cleared = httpx.delete(f"{local_sandbox.root_url}/_sandbox/faults")

        assert added["id"] == "f2"
        assert [fault["fired"] for fault in listed] == [1, 0]
        assert cleared.json() == {"cleared": 2}

    def test_closing_the_sandbox_ends_a_long_stall(self, tmp_path: Path) -> None:
        """close() does not wait out a stall; it wakes the stalled request."""
        sandbox = Sandbox(api_key=API_KEY, data_dir=tmp_path)
        sandbox.start()
        try:
            sandbox.add_fault("stall", route="get_job", seconds=600.0)
            with pytest.raises(httpx.TimeoutException):
                httpx.get(sandbox.api_base_url + "/jobs/x", headers=KEYED, timeout=0.5)

            started = time.monotonic()
            sandbox.close()
            took = time.monotonic() - started
        finally:
            sandbox.close()

        assert took < 300


class TestBandwidthFaults:
    def test_an_upload_at_200_kb_per_second_takes_its_time_and_is_stored(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """600 kB at 200 kB/s takes about 3 s (at least 2 s) and completes."""
        url = create_job(api)["models"][0]["uploadUrl"]
        data = os.urandom(600_000)
        add_fault(
            local_sandbox, kind="bandwidth", route="upload", bytes_per_second=200_000
        )

        started = time.monotonic()
        response = put(url, data)
        took = time.monotonic() - started

        assert response.status_code == 200
        assert took >= 2.0
        model = stored_model(local_sandbox)
        assert model["sha256"] == hashlib.sha256(data).hexdigest()
        [record] = logged(local_sandbox, "/glossi-sandbox-uploads/")
        assert record["status"] == 200 and record["fault"] == "bandwidth"


class TestUrlTtlFaults:
    def test_new_upload_urls_expire_after_the_fault_lifetime(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """URLs issued after the fault expire; earlier ones keep their lifetime."""
        earlier = create_job(api)["models"][0]["uploadUrl"]
        add_fault(local_sandbox, kind="url_ttl", seconds=1)
        later = create_job(api)["models"][0]["uploadUrl"]

        time.sleep(2.5)
        expired = put(later, b"too late")
        in_time = put(earlier, b"still fine")

        assert parse_qs(urlsplit(later).query)["X-Amz-Expires"] == ["1"]
        assert expired.status_code == 403
        assert s3_error_code(expired) == "AccessDenied"
        assert b"Request has expired" in expired.content
        assert in_time.status_code == 200
        creates = logged(local_sandbox, "/api/v1/jobs")
        assert [record["fault"] for record in creates] == [None, "url_ttl"]


def confirm_one_job(api: httpx.Client, data: bytes) -> str:
    """Create a job of one model, upload it and confirm it; return the job id."""
    job = create_job(api, "Box.glb")
    put(job["models"][0]["uploadUrl"], data).raise_for_status()
    api.post(f"/jobs/{job['jobId']}/confirm-uploads").raise_for_status()
    job_id: str = job["jobId"]
    return job_id


def wait_until_final(api: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        document: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        if document["status"] in ("COMPLETE", "FAILED"):
            return document
        assert time.monotonic() < deadline, f"job stuck in {document['status']}"
        time.sleep(0.02)


class TestJobFaults:
    def test_the_next_confirmed_job_fails_with_the_given_error(
        self, local_sandbox: Sandbox, api: httpx.Client, box: bytes
    ) -> None:
        """job_fails with count 1: that job ends FAILED, the next COMPLETE."""
        error = "Model rejected: simulated mesh error"
        add_fault(local_sandbox, kind="job_fails", count=1, error=error)

        failed = wait_until_final(api, confirm_one_job(api, box))
        completed = wait_until_final(api, confirm_one_job(api, box))

        assert failed["status"] == "FAILED" and failed["error"] == error
        assert completed["status"] == "COMPLETE"
        jobs = httpx.get(f"{local_sandbox.root_url}/_sandbox/jobs").json()["jobs"]
        assert [(job["status"], job["error"]) for job in jobs] == [
            ("FAILED", error),
            ("COMPLETE", None),
        ]

    def test_a_refused_confirm_does_not_use_up_the_fault(
        self, local_sandbox: Sandbox, api: httpx.Client, box: bytes
    ) -> None:
        """Only accepted confirms count; the default error names the simulation."""
        local_sandbox.add_fault("job_fails", count=1)
        job = create_job(api, "Box.glb")
        early = api.post(f"/jobs/{job['jobId']}/confirm-uploads")

        put(job["models"][0]["uploadUrl"], box).raise_for_status()
        api.post(f"/jobs/{job['jobId']}/confirm-uploads").raise_for_status()
        final = wait_until_final(api, job["jobId"])

        assert early.status_code == 400
        assert final["status"] == "FAILED"
        assert final["error"] == "Processing failed: simulated failure"
        assert local_sandbox.faults()[0]["fired"] == 1

    def test_a_hanging_job_stays_processing(
        self, local_sandbox: Sandbox, api: httpx.Client, box: bytes
    ) -> None:
        """After twenty step times the job is still PROCESSING, with nothing ready."""
        local_sandbox.add_fault("job_hangs", route="confirm_uploads")
        job_id = confirm_one_job(api, box)

        time.sleep(1.0)
        document = api.get(f"/jobs/{job_id}").json()

        assert document["status"] == "PROCESSING"
        assert document["progress"]["modelsReady"] == 0
        [inspected] = httpx.get(f"{local_sandbox.root_url}/_sandbox/jobs").json()[
            "jobs"
        ]
        assert inspected["status"] == "PROCESSING"
        [confirm] = logged(local_sandbox, "/confirm-uploads")
        assert confirm["status"] == 200 and confirm["fault"] == "job_hangs"


class TestHtmlFaults:
    def test_an_html_fault_answers_200_with_a_page_instead_of_json(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """The API answers a web page once; the next answer is JSON again."""
        job = create_job(api)
        add_fault(local_sandbox, kind="html", route="get_job", count=1)

        page = api.get(f"/jobs/{job['jobId']}")
        after = api.get(f"/jobs/{job['jobId']}")

        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.text.startswith("<!DOCTYPE html>")
        assert after.headers["content-type"] == "application/json"
        assert after.json()["jobId"] == job["jobId"]


class TestFaultRoutes:
    def test_faults_are_added_listed_with_fire_counts_and_removed(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """Add two, fire one, list, delete one, clear the rest."""
        first = add_fault(
            local_sandbox, kind="status", route="get_job", status=500, count=1
        )
        second = add_fault(local_sandbox, kind="latency", route="upload", seconds=0.1)
        api.get("/jobs/x")
        api.get("/jobs/x")
        listed = listed_faults(local_sandbox)

        removed = httpx.delete(f"{local_sandbox.root_url}/_sandbox/faults/f1")
        missing = httpx.delete(f"{local_sandbox.root_url}/_sandbox/faults/f1")
        remaining = listed_faults(local_sandbox)
        cleared = httpx.delete(f"{local_sandbox.root_url}/_sandbox/faults")

        assert first == {
            "id": "f1",
            "kind": "status",
            "route": "get_job",
            "count": 1,
            "fired": 0,
            "active": True,
            "status": 500,
            "retry_after": None,
            "retry_after_date_seconds": None,
        }
        assert second["id"] == "f2" and second["count"] is None
        assert [(f["id"], f["fired"], f["active"]) for f in listed] == [
            ("f1", 1, False),
            ("f2", 0, True),
        ]
        assert removed.status_code == 200 and removed.json()["id"] == "f1"
        assert missing.status_code == 404
        assert missing.json()["error"] == "fault_not_found"
        assert [fault["id"] for fault in remaining] == ["f2"]
        assert cleared.json() == {"cleared": 1}
        assert listed_faults(local_sandbox) == []

    def test_the_first_matching_fault_applies_in_the_order_added(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """An 'any' fault added first wins over a later create_job fault."""
        local_sandbox.add_fault("status", route="any", status=503, count=1)
        local_sandbox.add_fault("status", route="create_job", status=500, count=1)

        answers = [api.post("/jobs", json={}).status_code for _ in range(3)]

        assert answers == [503, 500, 400]

    def test_api_and_any_faults_spare_the_sandbox_routes(
        self, local_sandbox: Sandbox
    ) -> None:
        """Inspection and fault routes keep working under an 'any' fault."""
        local_sandbox.add_fault("status", route="any", status=503)
        local_sandbox.add_fault("reset", route="api")

        jobs = httpx.get(f"{local_sandbox.root_url}/_sandbox/jobs")
        listed = listed_faults(local_sandbox)
        cleared = httpx.delete(f"{local_sandbox.root_url}/_sandbox/faults")

        assert jobs.status_code == 200
        assert len(listed) == 2
        assert cleared.status_code == 200

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[]",
            b'{"kind": "explode", "route": "api"}',
            b'{"kind": "status", "route": "upload"}',
            b'{"kind": "status", "route": "upload", "status": "503"}',
            b'{"kind": "status", "route": "upload", "status": 200}',
            b'{"kind": "status", "route": "nowhere", "status": 503}',
            b'{"kind": "status", "route": "api", "status": 503, "count": 0}',
            b'{"kind": "status", "route": "api", "status": 503, "retry_after": 5, '
            b'"retry_after_date_seconds": 5}',
            b'{"kind": "status", "route": "api", "status": 503, "retry_after": "soon"}',
            b'{"kind": "latency", "route": "api", "seconds": true}',
            b'{"kind": "latency", "route": "api", "seconds": -1}',
            b'{"kind": "reset", "route": "list_faults"}',
            b'{"kind": "html", "route": "api", "seconds": 1}',
            b'{"kind": "job_fails", "route": "upload"}',
            b'{"kind": "bandwidth", "route": "upload", "bytes_per_second": 0}',
        ],
    )
    def test_a_malformed_fault_is_refused_with_400(
        self, local_sandbox: Sandbox, body: bytes
    ) -> None:
        """An unusable fault is a 400 invalid_fault with a reason; none is added."""
        response = httpx.post(f"{local_sandbox.root_url}/_sandbox/faults", content=body)

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_fault"
        assert response.json()["message"]
        assert listed_faults(local_sandbox) == []

    def test_the_python_api_validates_and_manages_faults(
        self, local_sandbox: Sandbox
    ) -> None:
        """add_fault checks like the route; remove_fault and clear_faults work."""
        with pytest.raises(InvalidFault, match="'seconds'"):
            local_sandbox.add_fault("latency", route="api")
        added = local_sandbox.add_fault("html", route="get_job")
        local_sandbox.add_fault("job_hangs")

        removed = local_sandbox.remove_fault(str(added["id"]))
        removed_again = local_sandbox.remove_fault(str(added["id"]))
        kinds = [fault["kind"] for fault in local_sandbox.faults()]
        local_sandbox.clear_faults()

        assert removed and not removed_again
        assert kinds == ["job_hangs"]
        assert local_sandbox.faults() == []

    def test_faults_never_record_the_key_or_a_signature(
        self, local_sandbox: Sandbox, api: httpx.Client
    ) -> None:
        """After faults fired on both servers, no secret is in the log or list."""
        url = create_job(api)["models"][0]["uploadUrl"]
        local_sandbox.add_fault("status", route="upload", status=503, count=1)
        local_sandbox.add_fault("html", route="get_job", count=1)
        put(url, b"data")
        api.get("/jobs/x")

        text = httpx.get(f"{local_sandbox.root_url}/_sandbox/requests").text
        text += httpx.get(f"{local_sandbox.root_url}/_sandbox/faults").text

        assert API_KEY not in text
        assert "X-Amz-Signature" not in text and "?" not in text

    def test_every_route_a_fault_can_name_exists(self) -> None:
        """The fault routes list matches the servers' routes, fault routes aside."""
        names = {route.name for route in (*ApiHandler.routes, *UploadHandler.routes)}

        assert names - FAULT_ROUTES == set(ROUTES) - {"unmatched"}


def parse_command_line(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glossi-watch sandbox")
    command.add_arguments(parser)
    return parser.parse_args(list(args))


class TestFaultsOnTheCommandLine:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "status:upload:status=503,count=2",
                FaultSpec("status", "upload", count=2, status=503),
            ),
            (
                "bandwidth:upload:bytes_per_second=200000",
                FaultSpec("bandwidth", "upload", bytes_per_second=200_000),
            ),
            (
                "stall:any:seconds=1.5,after_bytes=1024",
                FaultSpec("stall", "any", seconds=1.5, after_bytes=1024),
            ),
            (
                "status:api:status=429,retry_after=7",
                FaultSpec("status", "api", status=429, retry_after="7"),
            ),
            ("url_ttl::seconds=5", FaultSpec("url_ttl", "create_job", seconds=5.0)),
            ("job_hangs", FaultSpec("job_hangs", "confirm_uploads")),
            (
                "job_fails:confirm_uploads:error=Rejected: bad mesh,count=1",
                FaultSpec(
                    "job_fails", "confirm_uploads", count=1, error="Rejected: bad mesh"
                ),
            ),
        ],
    )
    def test_a_valid_fault_option_is_parsed(
        self, text: str, expected: FaultSpec
    ) -> None:
        """KIND:ROUTE[:key=value,...] becomes the fault it describes."""
        args = parse_command_line("--fault", text)

        assert args.faults == [expected]

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", "'kind' must be one of"),
            ("explode:api", "'kind' must be one of"),
            ("status:upload", "needs 'status'"),
            ("status:nowhere:status=503", "needs a 'route'"),
            ("status:upload:status=200", "at most 599"),
            ("status:upload:status=503,count=0", "'count'"),
            ("status:api:status=503,status=500", "given twice"),
            ("status:api:status=503,retry_after=soon", "HTTP date"),
            ("latency:api:seconds=-1", "seconds >= 0"),
            ("latency:api:seconds", "key=value"),
            ("latency:api:speed=3", "not 'speed'"),
            ("url_ttl:upload:seconds=5", "acts on 'create_job'"),
            ("bandwidth:upload:bytes_per_second=1.5", "whole number"),
        ],
    )
    def test_an_invalid_fault_option_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str], text: str, reason: str
    ) -> None:
        """argparse refuses the option, saying what is wrong."""
        with pytest.raises(SystemExit) as raised:
            parse_command_line("--fault", text)

        assert raised.value.code == 2
        error = capsys.readouterr().err
        assert "--fault" in error and reason in error

    def test_the_command_serves_with_its_faults_in_place(self, tmp_path: Path) -> None:
        """A fault given on the command line applies from the first request."""
        args = ["--port", "0", "--data-dir", str(tmp_path), "--api-key", API_KEY]
        args += [
            "--fault",
            "status:create_job:status=503,count=1",
            "--fault",
            "html:get_job",
        ]
        process = sandbox_command_process(args)
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            body = {"models": [{"fileName": "a.glb", "fileType": "glb"}]}
            statuses = [
                httpx.post(base_url + "/jobs", json=body, headers=KEYED).status_code
                for _ in range(2)
            ]
            page = httpx.get(base_url + "/jobs/x", headers=KEYED)
            root = base_url.removesuffix("/api/v1")
            faults = httpx.get(root + "/_sandbox/faults").json()["faults"]
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait()

        assert statuses == [503, 201]
        assert page.headers["content-type"].startswith("text/html")
        assert [(f["kind"], f["fired"]) for f in faults] == [("status", 1), ("html", 1)]
        assert process.returncode == 0
        assert API_KEY not in out + err
