"""A Recipe as the YAML file a person would write: defaults left out, paths relative to the file, comments kept.

`load_recipe` on the text gives back an equal Recipe (paths resolved against the
file's folder), so a recipe made in Python can be written, repeated and edited.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from edgequant.recipe.schema import Recipe

# Union tags: a source's `type` and a variant's `mode` are written even where they equal the default.
_TAGS = frozenset({"type", "mode"})
_FLOW_LINE = 100  # a variant longer than this on one line is written as a block


def recipe_yaml(
    recipe: Recipe,
    recipe_file: Path,
    *,
    header: Sequence[str] = (),
    comments: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The YAML text of `recipe` for a file at `recipe_file`.

    `comments` maps a top-level key or a `section.key` to comment lines written above
    it; a key the recipe leaves out still gets its lines, where it would be (a top-level
    key) or at the end of its section (this is how a starter recipe shows a commented-out choice).
    """
    comments = comments or {}
    base = Path(recipe_file).parent.resolve()
    data = _fields(recipe, base)
    data["name"] = recipe.name  # without it, the loader would name the recipe after its file
    lines = [f"# {line}" if line else "#" for line in header]
    for key in Recipe.model_fields:
        lines += _comment(comments.get(key, ()), "")
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, dict):
            lines.append(f"{key}:")
            for child, child_value in value.items():
                lines += _comment(comments.get(f"{key}.{child}", ()), "  ")
                lines.append(f"  {child}: {_flow(child_value)}")
            for absent in (k for k in comments if k.startswith(f"{key}.") and k.split(".", 1)[1] not in value):
                lines += _comment(comments[absent], "  ")
        elif key == "variants":
            lines.append(f"{key}:")
            for variant in value:
                lines += _variant_lines(variant)
        else:
            lines.append(f"{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def _variant_lines(variant: dict) -> list[str]:
    one_line = f"  - {_flow(variant)}"
    if len(one_line) <= _FLOW_LINE:
        return [one_line]
    lines = []
    for i, (key, value) in enumerate(variant.items()):
        lines.append(f"{'  - ' if i == 0 else '    '}{key}: {_flow(value)}")
    return lines


def _comment(lines: Sequence[str], indent: str) -> list[str]:
    return [f"{indent}# {line}" if line else f"{indent}#" for line in lines]


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20, allow_unicode=True)
    return text.strip().removesuffix("\n...").strip()


def _fields(model: BaseModel, base: Path) -> dict[str, Any]:
    """The fields of `model` that differ from their defaults (and the union tags), as plain YAML data."""
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if name not in _TAGS and not field.is_required() and value == field.get_default(call_default_factory=True):
            continue
        out[name] = _plain(value, base)
    return out


def _plain(value: Any, base: Path) -> Any:
    if isinstance(value, BaseModel):
        return _fields(value, base)
    if isinstance(value, Path):
        target = value.resolve()
        # Relative where the file and its data share a tree (the recipe moves with them); absolute otherwise.
        return os.path.relpath(target, base) if os.path.commonpath([target, base]) != "/" else str(target)
    if isinstance(value, (list, tuple)):
        return [_plain(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, base) for k, v in value.items()}
    return value
