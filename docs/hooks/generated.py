"""MkDocs hook: the reference pages are generated from the code when the site is built, never written twice.

A page asks for a generated part with a comment on a line of its own:

    <!-- generated: cli -->           every command and option of the Typer app
    <!-- generated: recipe -->        the recipe, from docs/recipe.schema.json
    <!-- generated: report -->        report.json, from docs/report.schema.json
    <!-- generated: exit-codes -->    the exit codes and the errors behind them, from edgequant/errors.py
    <!-- generated: layout -->        the package tree with each module's first docstring line
    <!-- generated: layers -->        the layers tests/test_architecture.py enforces

An unknown name fails the build.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda m: _GENERATORS[m.group(1)](), markdown)


# ---- JSON Schema (recipe, report) -----------------------------------------------------------------

def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type(prop: dict) -> str:
    """A schema node's type in words, with links to the models it names."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " or ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    for key in ("anyOf", "oneOf"):
        if key in prop:
            options = [_type(p) for p in prop[key] if p.get("type") != "null"]
            nullable = any(p.get("type") == "null" for p in prop[key])
            return " or ".join(options) + (" or null" if nullable else "")
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        return f"mapping to {_type(extra)}" if isinstance(extra, dict) else "mapping"
    if kind == "string" and prop.get("format") == "path":
        return "path"
    return kind or "any"


def _constraints(prop: dict) -> str:
    words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<",
             "minItems": "items >=", "maxItems": "items <=", "maxLength": "length <=", "pattern": "matches"}
    parts = [f"{words[k]} `{prop[k]}`" for k in words if k in prop]
    for option in prop.get("anyOf", []):
        parts += [f"{words[k]} `{option[k]}`" for k in words if k in option]
    return ", ".join(parts)


def _model_table(schema: dict) -> str:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        default = "required" if name in required else (f"`{json.dumps(prop['default'])}`" if "default" in prop else "")
        description = prop.get("description", "")
        if limits := _constraints(prop):
            description = f"{description} ({limits})" if description else limits
        rows.append(f"| `{name}` | {_cell(_type(prop))} | {_cell(default)} | {_cell(description)} |")
    return "\n".join(rows)


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def schema_reference(path: Path) -> str:
    """Every model of a JSON Schema, the root first and the others in the order the root reaches them."""
    schema = json.loads(path.read_text(encoding="utf-8"))
    defs = schema.get("$defs", {})
    order, queue = [], _refs(schema.get("properties", {}))
    while queue:
        name = queue.pop(0)
        if name not in order and name in defs:
            order.append(name)
            queue += _refs(defs[name].get("properties", {}))
    order += [name for name in defs if name not in order]
    parts = [f"## {schema.get('title', 'root')}\n\n{schema.get('description', '')}\n\n{_model_table(schema)}"]
    for name in order:
        model = defs[name]
        parts.append(f"## {name}\n\n{model.get('description', '')}\n\n{_model_table(model)}")
    return "\n\n".join(parts)


# ---- the CLI ---------------------------------------------------------------------------------------

def cli_reference() -> str:
    """Each command's help, usage and options, as `--help` prints them (through click's own help records)."""
    import typer

    from edgequant.cli import app

    root = typer.main.get_command(app)
    sections: list[str] = []

    def walk(command, path: list[str], parent) -> None:
        ctx = command.context_class(command, info_name=path[-1], parent=parent)
        name = " ".join(path)
        usage = " ".join([name, *command.collect_usage_pieces(ctx)])
        rows = ["| argument or option | what |", "|---|---|"]
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or getattr(param, "hidden", False):
                continue
            names, what = record
            rows.append(f"| `{_cell(names)}` | {_cell(what)} |")
        level = "#" * min(len(path) + 1, 4)
        sections.append(f"{level} `{name}`\n\n{(command.help or '').strip()}\n\n```text\n{usage}\n```\n\n"
                        + "\n".join(rows))
        for sub_name, sub in getattr(command, "commands", {}).items():  # a group's commands, in help order
            if not sub.hidden:
                walk(sub, [*path, sub_name], ctx)

    walk(root, ["edgequant"], None)
    return "\n\n".join(sections)


# ---- exit codes ------------------------------------------------------------------------------------

def exit_codes() -> str:
    """The codes from edgequant/errors.py's docstring, and which error class exits with which code."""
    tree = ast.parse((REPO / "edgequant" / "errors.py").read_text(encoding="utf-8"))
    rows = ["| code | meaning |", "|---:|---|"]
    for line in (ast.get_docstring(tree) or "").splitlines():
        if m := re.match(r"^\s+(\d+)\s+(.*)$", line):
            rows.append(f"| {m.group(1)} | {_cell(m.group(2))} |")
    constants = {node.targets[0].id: node.value.value for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                 and isinstance(node.targets[0], ast.Name)}
    codes: dict[str, int] = {}
    classes = ["| error (`edgequant.errors`) | exit code | when |", "|---|---:|---|"]
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        code = next((codes[b.id] for b in node.bases if isinstance(b, ast.Name) and b.id in codes), None)
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and getattr(stmt.targets[0], "id", "") == "exit_code":
                value = stmt.value
                code = constants.get(value.id) if isinstance(value, ast.Name) else getattr(value, "value", code)
        codes[node.name] = code
        doc = (ast.get_docstring(node) or "").split("\n\n")[0]
        classes.append(f"| `{node.name}` | {code if code is not None else ''} | {_cell(doc)} |")
    return "\n".join(rows) + "\n\n" + "\n".join(classes)


# ---- the package tree ------------------------------------------------------------------------------

def layout() -> str:
    """Each package and module of edgequant/ with the first line of its docstring, read without importing."""
    root = REPO / "edgequant"
    lines = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "__main__.py" or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(REPO)
        is_package = path.name == "__init__.py"
        shown = f"{rel.parent}/" if is_package else str(rel)
        depth = len(rel.parts) - (2 if is_package else 1)  # a package's modules nest under it
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        first = doc.strip().split("\n\n")[0].replace("\n", " ")
        lines.append(f"{'    ' * depth}- `{shown}`" + (f": {first}" if first else ""))
    return "\n".join(lines)


def layers() -> str:
    """The layers tests/test_architecture.py enforces, read from its LAYERS (never written twice)."""
    tree = ast.parse((REPO / "tests" / "test_architecture.py").read_text(encoding="utf-8"))
    value = next(n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "LAYERS")
    rows = ["| layer, lowest first | modules and packages |", "|---|---|"]
    for what, groups in ast.literal_eval(value):
        names = ", ".join(f"`{g}/`" if (REPO / "edgequant" / g).is_dir() else f"`{g}.py`" for g in groups if g)
        rows.append(f"| {_cell(what)} | {names or '`__init__.py`'} |")
    return "\n".join(rows)


_GENERATORS = {
    "cli": cli_reference,
    "recipe": lambda: schema_reference(REPO / "docs" / "recipe.schema.json"),
    "report": lambda: schema_reference(REPO / "docs" / "report.schema.json"),
    "exit-codes": exit_codes,
    "layout": layout,
    "layers": layers,
}
