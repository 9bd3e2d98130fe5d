"""The sandbox's Jobs API, job progression, inspection routes and lifecycle.

Every test talks to a real sandbox on 127.0.0.1 over HTTP; the S3 side is in
``test_sandbox_storage.py``, the command line in ``test_sandbox_command.py``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from glossi_watch.sandbox import Sandbox
from glossi_watch.sandbox.errors import SandboxStartError

API_KEY = "glsi_test_key_0123456789"
GLB_TYPE = {"Content-Type": "model/gltf-binary"}
FINAL_STATUSES = ("COMPLETE", "FAILED")
STATUS_ORDER = (
    "AWAITING_UPLOADS",
    "PROCESSING",
    "CREATING_PROJECTS",
    "RENDERING",
    "COMPLETE",
)


@pytest.fixture
def local_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox in this process, on free ports, closed after the test."""
    with Sandbox(api_key=API_KEY, data_dir=tmp_path / "data", step_seconds=0.05) as sb:
        yield sb


@pytest.fixture
def box(samples: Path) -> bytes:
    return (samples / "Box.glb").read_bytes()


@pytest.fixture
def api(local_sandbox: Sandbox) -> Iterator[httpx.Client]:
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(
        base_url=local_sandbox.api_base_url, headers=headers, timeout=30
    ) as client:
        yield client


def create_job(api: httpx.Client, *names: str, **options: Any) -> dict[str, Any]:
    models = [{"fileName": name, "fileType": "glb"} for name in names]
    response = api.post("/jobs", json={"models": models, **options})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def upload(model: dict[str, Any], data: bytes) -> None:
    response = httpx.put(model["uploadUrl"], content=data, headers=GLB_TYPE, timeout=30)
    assert response.status_code == 200, response.text


def wait_until_final(
    api: httpx.Client, job_id: str, *, pause: float = 0.02
) -> tuple[dict[str, Any], list[str]]:
    """Poll a job to COMPLETE or FAILED; return the last answer and statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + 60.0
    while True:
        document: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        if not seen or seen[-1] != document["status"]:
            seen.append(document["status"])
        if document["status"] in FINAL_STATUSES:
            return document, seen
        assert time.monotonic() < deadline, f"job stuck in {seen[-1]}"
        time.sleep(pause)


def assert_api_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"]


def inspected_jobs(sandbox: Sandbox) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = httpx.get(f"{sandbox.root_url}/_sandbox/jobs").json()[
        "jobs"
    ]
    return jobs


class TestHappyPath:
    def test_single_model_job_completes_with_a_project(
        self, api: httpx.Client, box: bytes
    ) -> None:
        """Create, upload a real GLB, confirm and poll: the job ends COMPLETE."""
        job = create_job(api, "Box.glb", templateId="tpl")
        assert job["status"] == "AWAITING_UPLOADS"
        [model] = job["models"]

        upload(model, box)
        confirm = api.post(f"/jobs/{job['jobId']}/confirm-uploads")
        final, seen = wait_until_final(api, job["jobId"])

        assert confirm.status_code == 200
        assert confirm.json() == {
            "jobId": job["jobId"],
            "status": "PROCESSING",
            "modelsConfirmed": 1,
        }
        assert final["status"] == "COMPLETE"
        assert "batchProject" not in final and "error" not in final
        [result] = final["results"]
        assert result["model"] == {"id": model["id"], "name": "Box.glb"}
        assert result["project"]["id"] and result["project"]["name"]
        assert [status for status in STATUS_ORDER if status in seen] == seen

    def test_inspection_shows_size_and_sha256_of_the_uploaded_file(
        self, local_sandbox: Sandbox, api: httpx.Client, samples: Path
    ) -> None:
        """The stored object has the uploaded file's size and SHA-256."""
        data = (samples / "barrel.glb").read_bytes()
        job = create_job(api, "barrel.glb", "later.glb")
        before = inspected_jobs(local_sandbox)

        upload(job["models"][0], data)
        after = inspected_jobs(local_sandbox)

        assert before[0]["models"][0]["size"] is None
        assert before[0]["models"][0]["sha256"] is None
        [entry] = after
        assert entry["jobId"] == job["jobId"]
        assert entry["status"] == "AWAITING_UPLOADS"
        assert entry["confirmCount"] == 0
        stored, waiting = entry["models"]
        assert stored["id"] == job["models"][0]["id"]
        assert stored["fileName"] == "barrel.glb"
        assert stored["size"] == len(data)
        assert stored["sha256"] == hashlib.sha256(data).hexdigest()
        assert waiting["size"] is None and waiting["sha256"] is None

    def test_a_job_of_several_models_has_a_batch_project(
        self, api: httpx.Client, samples: Path
    ) -> None:
        """Two models are grouped into a batchProject; each gets its own project."""
        names = ("Box.glb", "BoxTextured.glb")
        job = create_job(api, *names)
        for model, name in zip(job["models"], names, strict=True):
            upload(model, (samples / name).read_bytes())

        api.post(f"/jobs/{job['jobId']}/confirm-uploads").raise_for_status()
        final, _ = wait_until_final(api, job["jobId"])

        assert final["status"] == "COMPLETE"
        assert set(final["batchProject"]) == {"id", "title"}
        models = [result["model"]["name"] for result in final["results"]]
        projects = {result["project"]["id"] for result in final["results"]}
        assert models == list(names)
        assert len(projects) == 2
        assert final["progress"] == {
            "modelsUploaded": 2,
            "modelsReady": 2,
            "modelsTotal": 2,
            "projectsCreated": 2,
            "projectsTotal": 2,
            "rendersComplete": 0,
            "rendersTotal": 0,
        }

    def test_without_create_projects_the_results_have_no_project(
        self, api: httpx.Client, box: bytes
    ) -> None:
        """createProjects false: no project stage, and each result's project is null."""
        job = create_job(api, "Box.glb", createProjects=False)
        upload(job["models"][0], box)

        api.post(f"/jobs/{job['jobId']}/confirm-uploads").raise_for_status()
        final, seen = wait_until_final(api, job["jobId"])

        assert final["status"] == "COMPLETE"
        assert final["results"][0]["project"] is None
        assert final["progress"]["projectsTotal"] == 0
        assert "CREATING_PROJECTS" not in seen

    def test_a_rendering_job_walks_through_every_status_in_order(
        self, tmp_path: Path, box: bytes
    ) -> None:
        """With rendering asked for, each status shows for a step, then COMPLETE."""
        with (
            Sandbox(api_key=API_KEY, data_dir=tmp_path, step_seconds=1.0) as sandbox,
            httpx.Client(
                base_url=sandbox.api_base_url, headers={"X-API-Key": API_KEY}
            ) as api,
        ):
            job = create_job(
                api, "Box.glb", templateId="tpl", renderSettings={"renderShots": True}
            )
            upload(job["models"][0], box)
            api.post(f"/jobs/{job['jobId']}/confirm-uploads").raise_for_status()
            final, seen = wait_until_final(api, job["jobId"])

        assert seen == ["PROCESSING", "CREATING_PROJECTS", "RENDERING", "COMPLETE"]
        assert final["progress"]["rendersTotal"] == 1
        assert final["progress"]["rendersComplete"] == 1


class TestFailedJobs:
    @pytest.mark.parametrize("kind", ["not-glb", "truncated-glb"])
    def test_an_invalid_upload_fails_the_job_naming_the_file(
        self, api: httpx.Client, box: bytes, kind: str
    ) -> None:
        """A model that is not a valid GLB makes the job FAILED with its name."""
        broken = b"this is not a model at all" if kind == "not-glb" else box[:600]
        job = create_job(api, "good.glb", "broken.glb")
        upload(job["models"][0], box)
        upload(job["models"][1], broken)

        api.post(f"/jobs/{job['jobId']}/confirm-uploads").raise_for_status()
        final, seen = wait_until_final(api, job["jobId"])

        assert set(seen) <= {"PROCESSING", "FAILED"} and seen[-1] == "FAILED"
        assert "'broken.glb'" in final["error"]
        assert "good.glb" not in final["error"]
        assert "results" not in final
        assert final["progress"]["modelsReady"] == 1


class TestApiRefusals:
    @pytest.mark.parametrize("key", [None, "wrong-key", ""])
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/jobs"),
            ("GET", "/jobs/some-job"),
            ("POST", "/jobs/some-job/confirm-uploads"),
            ("GET", "/no-such-route"),
        ],
    )
    def test_a_missing_or_wrong_key_is_refused_with_401(
        self, local_sandbox: Sandbox, key: str | None, method: str, path: str
    ) -> None:
        """Every /api/v1 route answers 401 without the right X-API-Key."""
        headers = {} if key is None else {"X-API-Key": key}

        response = httpx.request(
            method,
            local_sandbox.api_base_url + path,
            headers=headers,
            json={"models": []},
        )

        assert_api_error(response, 401, "unauthorized")

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            (b"not json", "invalid_body"),
            (b"", "invalid_body"),
            (b'[{"fileName": "a.glb"}]', "invalid_body"),
            (b'"models"', "invalid_body"),
            (b"{}", "invalid_models"),
            (b'{"models": []}', "invalid_models"),
            (b'{"models": "a.glb"}', "invalid_models"),
            (b'{"models": ["a.glb"]}', "invalid_models"),
            (b'{"models": [{"fileType": "glb"}]}', "invalid_file_name"),
            (b'{"models": [{"fileName": "", "fileType": "glb"}]}', "invalid_file_name"),
            (b'{"models": [{"fileName": 7, "fileType": "glb"}]}', "invalid_file_name"),
            (
                b'{"models": [{"fileName": "a.fbx", "fileType": "fbx"}]}',
                "unsupported_file_type",
            ),
            (b'{"models": [{"fileName": "a.glb"}]}', "unsupported_file_type"),
            (
                b'{"models": [{"fileName": "a.glb", "fileType": "glb"}], '
                b'"renderSettings": {"renderBookmarks": true}}',
                "template_required",
            ),
            (
                b'{"models": [{"fileName": "a.glb", "fileType": "glb"}], '
                b'"renderSettings": {"renderShots": true}, "templateId": ""}',
                "template_required",
            ),
        ],
    )
    def test_an_unusable_create_body_is_refused_with_400(
        self, api: httpx.Client, body: bytes, code: str
    ) -> None:
        """A create-job body that cannot make a job gets 400 with a reason code."""
        response = api.post("/jobs", content=body)

        assert_api_error(response, 400, code)

    def test_unknown_fields_are_ignored_and_the_webhook_url_accepted(
        self, api: httpx.Client
    ) -> None:
        """Extra fields do not stop a job from being created."""
        body = {
            "models": [{"fileName": "a.glb", "fileType": "glb", "colour": "red"}],
            "webhookUrl": "https://example.invalid/hook",
            "renderSettings": {"renderBookmarks": False, "imageQuality": 1},
            "futureOption": {"nested": True},
        }

        response = api.post("/jobs", json=body)

        assert response.status_code == 201
        assert response.json()["models"][0]["fileName"] == "a.glb"

    def test_confirm_before_every_upload_is_refused_naming_the_missing_file(
        self, api: httpx.Client, box: bytes
    ) -> None:
        """Confirming with one of two files uploaded is a 400 naming the other."""
        job = create_job(api, "first.glb", "second.glb")
        early = api.post(f"/jobs/{job['jobId']}/confirm-uploads")
        upload(job["models"][0], box)

        response = api.post(f"/jobs/{job['jobId']}/confirm-uploads")

        assert_api_error(early, 400, "uploads_incomplete")
        assert_api_error(response, 400, "uploads_incomplete")
        assert "second.glb" in response.json()["message"]
        assert "first.glb" not in response.json()["message"]
        assert api.get(f"/jobs/{job['jobId']}").json()["status"] == "AWAITING_UPLOADS"

    def test_a_second_confirm_is_a_conflict_and_is_not_counted(
        self, local_sandbox: Sandbox, api: httpx.Client, box: bytes
    ) -> None:
        """Confirming twice answers 409; the sandbox counts one confirm."""
        job = create_job(api, "Box.glb")
        upload(job["models"][0], box)
        api.post(f"/jobs/{job['jobId']}/confirm-uploads").raise_for_status()

        again = api.post(f"/jobs/{job['jobId']}/confirm-uploads")

        assert_api_error(again, 409, "already_confirmed")
        assert inspected_jobs(local_sandbox)[0]["confirmCount"] == 1

    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/jobs/no-such-job"), ("POST", "/jobs/no-such-job/confirm-uploads")],
    )
    def test_an_unknown_job_is_404(
        self, api: httpx.Client, method: str, path: str
    ) -> None:
        """A job id the sandbox never issued answers 404."""
        response = api.request(method, path)

        assert_api_error(response, 404, "job_not_found")

    def test_a_wrong_method_is_405_and_an_unknown_route_404(
        self, api: httpx.Client
    ) -> None:
        """Routes answer only their method; other paths are not found."""
        wrong_method = api.delete("/jobs")
        unknown = api.get("/models")

        assert_api_error(wrong_method, 405, "method_not_allowed")
        assert wrong_method.headers["allow"] == "POST"
        assert_api_error(unknown, 404, "not_found")


class TestRequestLog:
    def test_the_log_has_header_names_only_and_never_the_key_or_signature(
        self, local_sandbox: Sandbox, api: httpx.Client, box: bytes
    ) -> None:
        """Both servers' requests are logged by path and header names, no secrets."""
        job = create_job(api, "Box.glb")
        upload(job["models"][0], box)
        httpx.get(local_sandbox.api_base_url + "/jobs/x", headers={"X-API-Key": "typo"})

        response = httpx.get(f"{local_sandbox.root_url}/_sandbox/requests")

        text = response.text
        assert API_KEY not in text and "typo" not in text
        assert "X-Amz-Signature" not in text and "?" not in text
        create, put, typo, inspect = response.json()["requests"]
        assert create == {
            "method": "POST",
            "path": "/api/v1/jobs",
            "headers": create["headers"],
            "hadApiKey": True,
            "server": "api",
            "status": 201,
            "fault": None,
        }
        assert "X-API-Key" in create["headers"]
        assert "Content-Type" in create["headers"]
        assert put["server"] == "storage" and put["method"] == "PUT"
        assert put["path"] == urlsplit(job["models"][0]["uploadUrl"]).path
        assert put["hadApiKey"] is False
        assert typo["hadApiKey"] is True
        assert inspect["path"] == "/_sandbox/requests"


class TestLifecycle:
    def test_api_and_storage_are_different_origins_on_loopback(
        self, local_sandbox: Sandbox
    ) -> None:
        """The upload storage listens on its own port, as S3 is its own host."""
        assert local_sandbox.api_base_url == local_sandbox.root_url + "/api/v1"
        assert local_sandbox.root_url.startswith("http://127.0.0.1:")
        assert local_sandbox.storage_url.startswith("http://127.0.0.1:")
        assert local_sandbox.storage_url != local_sandbox.root_url

    def test_a_taken_port_is_a_start_error_and_close_is_repeatable(
        self, local_sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """A second sandbox on the same port cannot start; closing twice is fine."""
        port = int(local_sandbox.root_url.rsplit(":", 1)[1])
        other = Sandbox(api_key=API_KEY, data_dir=tmp_path / "other", port=port)

        with pytest.raises(SandboxStartError) as raised:
            other.start()
        other.close()
        other.close()

        assert f"127.0.0.1:{port}" in str(raised.value)

    def test_an_unusable_data_folder_is_a_start_error(self, tmp_path: Path) -> None:
        """A data folder that cannot be created stops the start, naming it."""
        not_a_folder = tmp_path / "file"
        not_a_folder.write_text("in the way")
        sandbox = Sandbox(api_key=API_KEY, data_dir=not_a_folder)

        with pytest.raises(SandboxStartError) as raised:
            sandbox.start()

        assert str(not_a_folder) in str(raised.value)

    def test_close_ends_idle_keep_alive_connections(self, tmp_path: Path) -> None:
        """Closing the sandbox does not wait for clients to hang up."""
        sandbox = Sandbox(api_key=API_KEY, data_dir=tmp_path)
        sandbox.start()
        client = httpx.Client(headers={"X-API-Key": API_KEY})
        client.get(sandbox.root_url + "/_sandbox/jobs").raise_for_status()

        started = time.monotonic()
        sandbox.close()
        took = time.monotonic() - started
        client.close()

        assert took < 10.0
