"""The JSON sidecar written beside every filed model: what happened to it.

``chair.glb`` in ``done/`` or ``failed/`` gets ``chair.glb.json``. Its keys are
a stable contract for studio scripts: ``status`` (``done`` or ``failed``),
``reason`` and ``message`` when failed, ``file`` (the name it was dropped
under), ``stored_as`` (its name here, which differs when a name was taken),
``size``, ``sha256``, the job's ``job_id``, ``job_status`` and ``job_error``,
the model's ``model_id``, ``project_id`` and ``project_name``,
``batch_project_id``, UTC timestamps, and ``attempts``: every retry with its
reason; and ``history``: earlier outcomes of the same file, newest first, when it
was put back after a failure. It never holds the API key or an upload URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glossi_watch import __version__
from glossi_watch.store import Row, utc_now

SIDECAR_SUFFIX = ".json"


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + SIDECAR_SUFFIX)


def model_result(batch: Row | None, model_id: str | None) -> dict[str, Any]:
    """This model's entry of the finished job's ``results``, if any."""
    if batch is None or not batch.get("result_json") or not model_id:
        return {}
    for result in json.loads(batch["result_json"]):
        if result.get("model_id") == model_id:
            return dict(result)
    return {}


def build_sidecar(
    file: Row,
    batch: Row | None,
    attempts: list[Row],
    final_path: Path,
    history: list[Row] | None = None,
) -> dict[str, Any]:
    """The sidecar document for ``file`` filed at ``final_path``."""
    result = model_result(batch, file.get("model_id"))
    document: dict[str, Any] = {
        "status": file["outcome"],
        "file": file["rel_path"],
        "stored_as": final_path.name,
        "folder": file["folder"],
        "size": file["size"],
        "sha256": file["sha256"],
        "job_id": batch["job_id"] if batch else None,
        "job_status": batch["job_status"] if batch else None,
        "model_id": file.get("model_id"),
        "project_id": result.get("project_id"),
        "project_name": result.get("project_name"),
        "batch_project_id": batch["batch_project_id"] if batch else None,
        "detected_at": file["detected_at"],
        "ready_at": file["ready_at"],
        "uploaded_at": file["uploaded_at"],
        "job_finished_at": batch["finished_at"] if batch else None,
        "filed_at": utc_now(),
        "attempts": attempts,
        "history": history or [],
        "glossi_watch_version": __version__,
    }
    if file["outcome"] != "done":
        document["reason"] = file["reason"]
        document["message"] = file["message"]
        if batch and batch.get("job_error"):
            document["job_error"] = batch["job_error"]
    return document
