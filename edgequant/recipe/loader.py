"""Load a recipe file into a Recipe, with errors that point at file:line:col and the field."""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgequant.errors import RecipeError
from edgequant.recipe.schema import Recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read, validate and resolve a recipe file. Raises RecipeError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"no such recipe file: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where) from None
    if not isinstance(data, dict):
        raise RecipeError("a recipe is a YAML mapping with `model` and `variants`", where=f"{path}:1:1")
    data.setdefault("name", _default_name(path))
    data.setdefault("output_dir", f"build/{data['name']}")
    try:
        recipe = Recipe.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise recipe_error(exc, path, root) from None
    for loc, target in _input_paths(recipe):
        if not target.exists():
            raise RecipeError(f"no such file or directory: {target}", where=locate(path, loc, root), field=dotted_path(loc))
    return recipe


def _input_paths(recipe: Recipe):
    """(field location, path) of every file the recipe reads, for a check before anything runs."""
    yield ["model", "path"], recipe.model.path
    sections = [(["calibration"], recipe.calibration)]
    sections += [(["variants", i, "training"], getattr(v, "training", None)) for i, v in enumerate(recipe.variants)]
    sections += [(["evaluation"], getattr(recipe, "evaluation", None))]
    for loc, spec in sections:
        source = getattr(spec, "source", None)
        for key in ("path", "labels"):
            value = getattr(source, key, None)
            if isinstance(value, Path):
                yield [*loc, "source", key], value


def locate(path: str | Path, loc: list, root: yaml.Node | None = None) -> str:
    """'file:line:col' of the field at `loc` in a recipe file (just 'file' if it cannot be found)."""
    if root is None:
        try:
            root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except (OSError, yaml.YAMLError):
            return str(path)
    node = _node_at(root, loc)
    return f"{path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}" if node is not None else str(path)


def _default_name(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "_.-" else "-" for c in path.stem)
    return stem if stem[:1].isalnum() else "model"


def recipe_hash(recipe: Recipe) -> str:
    """SHA-256 of the validated recipe in canonical JSON: formatting and comments do not change it."""
    canonical = json.dumps(recipe.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def recipe_error(exc: ValidationError, path: Path, root: yaml.Node | None) -> RecipeError:
    """The first validation error, as `file:line:col: field.path: what was expected`."""
    err = exc.errors()[0]
    loc, models = _walk(err["loc"])
    if err["type"] == "union_tag_invalid":  # point at the `mode:` / `type:` key itself
        loc.append(str(err.get("ctx", {}).get("discriminator", "")).strip("'"))
    return RecipeError(_message(err, loc, models), where=locate(path, loc, root), field=dotted_path(loc))


def _walk(raw_loc: tuple) -> tuple[list, list[type[BaseModel]]]:
    """Follow pydantic's error location through the schema.

    Returns the location as it reads in the YAML (without the union tags pydantic
    inserts, such as a variant's mode) and the models that could hold its last key.
    """
    loc: list = []
    annotation: Any = Recipe
    for part in raw_loc[:-1]:
        if isinstance(part, int):
            annotation = next((a for a in _flatten(annotation) if typing.get_origin(a) is list), annotation)
            annotation = typing.get_args(annotation)[0] if typing.get_args(annotation) else annotation
            loc.append(part)
            continue
        models = _models_in(annotation)
        owner = next((m for m in models if part in m.model_fields), None)
        if owner is not None:
            annotation = owner.model_fields[part].annotation
            loc.append(part)
            continue
        tagged = [m for m in models if part in _tags(m)]
        if tagged:  # a discriminated-union label: not a key in the file
            annotation = tagged[0]
            continue
        if "[" not in str(part):  # pydantic's validator labels such as "function-after[...]"
            loc.append(part)
    if raw_loc:
        loc.append(raw_loc[-1])
    return loc, _models_in(annotation)


def _flatten(annotation) -> list:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _flatten(arg)]
    return [annotation]


def _models_in(annotation) -> list[type[BaseModel]]:
    return [a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]


def _tags(model: type[BaseModel]) -> set[str]:
    return {f.default for name, f in model.model_fields.items() if name in ("mode", "type") and f.default}


def _node_at(root: yaml.Node | None, loc: list) -> yaml.Node | None:
    """The deepest YAML node on `loc` (the offending key itself when the key is unknown)."""
    node = root
    for depth, part in enumerate(loc, 1):
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child = key if depth == len(loc) else value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return node


def dotted_path(loc: list) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict, loc: list, models: list[type[BaseModel]]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = sorted({f for m in models for f in m.model_fields})
        hint = difflib.get_close_matches(key, allowed, n=1)
        if hint:
            return f"unknown key {key!r}; did you mean {hint[0]!r}?"
        return f"unknown key {key!r}; expected one of: {', '.join(allowed)}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{ctx.get('tag')!r} is not one of {expected}"
    if kind == "missing":
        return "this field is required"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")
