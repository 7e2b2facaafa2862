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
from edgequant.recipe.schema import Recipe, dotted_path
from edgequant.trust import RECIPE_KEY_GONE

MAX_DEPTH = 50  # recipes nest 5 levels; a deeper document is an attack on the parser, not a recipe


class RecipeErrors(RecipeError):
    """Every problem found in a recipe, sorted by position; the message is the first one.

    `recipe` is the validated recipe when only rules across fields failed, so that the
    file checks can still run and report in the same pass.
    """

    def __init__(self, errors: list[RecipeError], recipe: Recipe | None = None):
        self.errors = errors
        self.recipe = recipe
        more = f" (and {len(errors) - 1} more: `edgequant recipe check` lists them all)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}")
        self.where, self.field = errors[0].where, errors[0].field


class _RecipeYamlLoader(yaml.SafeLoader):
    """Safe YAML without what a recipe never needs and an attacker loves: aliases (alias bombs),
    deep nesting (recursion), duplicate keys (a silent last-one-wins)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.MarkedYAMLError(problem="aliases (*name) are not allowed in a recipe: write the value out",
                                       problem_mark=mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_DEPTH} levels",
                                       problem_mark=self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, yaml.Node] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    first = seen[key.value].start_mark
                    raise yaml.MarkedYAMLError(
                        problem=f"duplicate key {key.value!r} (first at line {first.line + 1}); "
                        "a key may appear once per mapping",
                        problem_mark=key.start_mark,
                    )
                seen[key.value] = key
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, path: Path) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (for positions). Raises RecipeError at the offending line."""
    loader = None
    try:
        loader = _RecipeYamlLoader(text)  # its reader already refuses control characters
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}", where=where) from None
    except RecursionError:  # flow collections the scanner nests before the composer counts them
        raise RecipeError(f"not valid YAML: nested deeper than {MAX_DEPTH} levels", where=str(path)) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, root


def read_text(path: Path) -> str:
    """The recipe file as text; not UTF-8 is an error at the first bad byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RecipeError(f"not UTF-8 text (byte {raw[exc.start]:#04x})", where=f"{path}:{line}:{column}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read, validate and resolve a recipe file.

    Raises RecipeErrors with every problem found (schema, cross-field rules, missing input
    files), each naming file:line:col and the field, sorted by position.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"no such recipe file: {path}")
    try:
        text = read_text(path)
    except OSError as exc:
        raise RecipeError(f"cannot read the recipe ({exc.strerror})", where=str(path)) from None
    data, root = parse_yaml(text, path)
    if not isinstance(data, dict):
        raise RecipeError("a recipe is a YAML mapping with `model` and `variants`", where=locate(path, [], root))
    data.setdefault("name", _default_name(path))
    data.setdefault("output_dir", f"build/{data['name']}")
    cross_field: list = []
    try:
        recipe = Recipe.model_validate(
            data, context={"base_dir": path.parent.resolve(), "cross_field_problems": cross_field}
        )
    except ValidationError as exc:
        raise sorted_errors(validation_errors(exc, path, root)) from None
    errors = [RecipeError(f"no such file or directory: {target}", where=locate(path, loc, root), field=dotted_path(loc))
              for loc, target in _input_paths(recipe) if not target.exists()]
    checkable = recipe if not errors else None
    errors += [RecipeError(message, where=locate(path, loc, root), field=dotted_path(loc)) for loc, message in cross_field]
    if errors:
        raise sorted_errors(errors, checkable)
    return recipe


def sorted_errors(errors: list[RecipeError], recipe: Recipe | None = None) -> RecipeErrors:
    """One exception for all of `errors`, in the order they appear in the file."""

    def position(err: RecipeError) -> tuple[int, int]:
        parts = err.where.rsplit(":", 2)
        try:
            return int(parts[-2]), int(parts[-1])
        except (IndexError, ValueError):
            return 0, 0

    return RecipeErrors(sorted(errors, key=position), recipe)


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
            root = parse_yaml(read_text(Path(path)), Path(path))[1]
        except (OSError, RecipeError):
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


def validation_errors(exc: ValidationError, path: Path, root: yaml.Node | None) -> list[RecipeError]:
    """Each validation error as `file:line:col: field.path: what was expected`."""
    errors = []
    for err in exc.errors():
        loc, models = _walk(err["loc"])
        if err["type"] == "union_tag_invalid":  # point at the `mode:` / `type:` key itself
            loc.append(str(err.get("ctx", {}).get("discriminator", "")).strip("'"))
        errors.append(RecipeError(_message(err, loc, models), where=locate(path, loc, root), field=dotted_path(loc)))
    return errors


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


def _message(err: dict, loc: list, models: list[type[BaseModel]]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        if key == "trust_code":  # the key older recipes used to grant themselves trust
            return RECIPE_KEY_GONE
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
    msg = err["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") and "input" in err:  # a strict type: say what was given (`true` is not 1)
        given = json.dumps(err["input"], default=str)
        msg += f", got {given if len(given) <= 40 else given[:37] + '...'}"
    return msg
