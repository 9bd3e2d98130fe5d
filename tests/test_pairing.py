"""Files are paired with the models the API created by name, never by luck."""

from __future__ import annotations

from glossi_watch.api import CreatedModel
from glossi_watch.pipeline import _pair_models


def model(name: str) -> CreatedModel:
    return CreatedModel(model_id="id-" + name, file_name=name, upload_url="u")


def rows(*paths: str) -> list[dict[str, object]]:
    return [{"id": index, "rel_path": path} for index, path in enumerate(paths)]


def test_a_reordered_answer_is_paired_by_name() -> None:
    files = rows("chair.glb", "table.glb")

    pairs = _pair_models(files, (model("table.glb"), model("chair.glb")))

    assert pairs is not None
    assert [(f["rel_path"], m.model_id) for f, m in pairs] == [
        ("chair.glb", "id-chair.glb"),
        ("table.glb", "id-table.glb"),
    ]


def test_the_same_name_from_two_subfolders_keeps_the_order() -> None:
    files = rows("alice/chair.glb", "bob/chair.glb")
    first, second = model("chair.glb"), model("chair.glb")

    assert _pair_models(files, (first, second)) == [
        (files[0], first),
        (files[1], second),
    ]


def test_names_that_do_not_match_are_refused() -> None:
    files = rows("chair.glb", "table.glb")

    assert _pair_models(files, (model("chair.glb"), model("lamp.glb"))) is None
    assert _pair_models(files, (model("chair.glb"),)) is None
