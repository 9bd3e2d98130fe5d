"""The body of ``POST /api/v1/jobs``: checked, and reduced to what the sandbox uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from glossi_watch.sandbox.errors import ApiRefusal

JsonObject = dict[str, object]
FieldType = TypeVar("FieldType")


@dataclass(frozen=True)
class JobRequest:
    """A validated ``POST /jobs`` body; fields the sandbox does not use are dropped."""

    file_names: tuple[str, ...]
    create_projects: bool = True
    render: bool = False
    template_id: str | None = None
    webhook_url: str | None = None


def parse_job_request(body: bytes) -> JobRequest:
    """Validate a create-job body, refusing it with 400 and a reason when unusable.

    Unknown fields are ignored and a JSON ``null`` counts as an absent field.
    Rendering is asked for by ``renderSettings`` with ``renderBookmarks`` or
    ``renderShots`` set to true, and then needs a ``templateId``.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        document = None
    if not isinstance(document, dict):
        raise _bad_request("invalid_body", "The request body must be a JSON object.")

    models = document.get("models")
    if not isinstance(models, list) or not models:
        raise _bad_request(
            "invalid_models",
            "The body needs a non-empty 'models' list, for example "
            '[{"fileName": "chair.glb", "fileType": "glb"}].',
        )
    file_names = tuple(_parse_model(index, model) for index, model in enumerate(models))

    create_projects = _optional(document, "createProjects", bool, "true or false")
    render_settings = _optional(document, "renderSettings", dict, "an object")
    template_id = _optional(document, "templateId", str, "a string")
    webhook_url = _optional(document, "webhookUrl", str, "a string")

    render = render_settings is not None and any(
        render_settings.get(name) is True for name in ("renderBookmarks", "renderShots")
    )
    if render and not template_id:
        raise _bad_request(
            "template_required",
            "Rendering needs a 'templateId'; add one or leave out 'renderSettings'.",
        )
    return JobRequest(
        file_names,
        create_projects=create_projects is not False,
        render=render,
        template_id=template_id,
        webhook_url=webhook_url,
    )


def _parse_model(index: int, model: object) -> str:
    if not isinstance(model, dict):
        raise _bad_request(
            "invalid_models",
            f"Model {index} must be an object with 'fileName' and 'fileType'.",
        )

    file_name = model.get("fileName")
    if not isinstance(file_name, str) or not file_name:
        raise _bad_request(
            "invalid_file_name",
            f"Model {index} needs a 'fileName' that is a non-empty string.",
        )

    file_type = model.get("fileType")
    if file_type != "glb":
        raise _bad_request(
            "unsupported_file_type",
            f"Model {index} ({file_name!r}) has fileType {file_type!r}; "
            "the only accepted fileType is 'glb'.",
        )
    return file_name


def _optional(
    document: JsonObject, name: str, kind: type[FieldType], shape: str
) -> FieldType | None:
    value = document.get(name)
    if value is None or isinstance(value, kind):
        return value
    raise _bad_request("invalid_field", f"'{name}' must be {shape} when given.")


def _bad_request(code: str, message: str) -> ApiRefusal:
    return ApiRefusal(400, code, message)
