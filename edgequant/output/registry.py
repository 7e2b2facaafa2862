"""A model registry on MLflow (the `mlflow` extra): log builds, register variants, promote and roll back.

- `log_build` logs a finished build as an MLflow run (recipe, manifest, report, artifacts,
  metrics per variant, gate results) and registers each variant as a new version of the
  registered model `<recipe>-<variant>`: float and quantized variants under separate names,
  linked by the source model's SHA-256 (tag `edgequant.source_sha256`). A version whose
  variant has gates and passed them all gets the alias `candidate`.
- `promote` moves the alias `production`; `rollback` moves it back to the version that was
  production before. The order of production versions is kept in the registered model's
  tag `edgequant.production_history` (comma-separated versions, oldest first).
- `resolve` turns `models:/NAME@ALIAS` (or `models:/NAME/VERSION`) into a local .tflite.

The default store is `sqlite:///mlruns.db`: an embedded SQLite file in the working
directory, artifacts beside it in `mlartifacts/`, no server.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from edgequant.errors import BuildError, EdgequantError, InputError
from edgequant.extras import require

DEFAULT_URI = "sqlite:///mlruns.db"
CANDIDATE = "candidate"
PRODUCTION = "production"
HISTORY_TAG = "edgequant.production_history"
QUANTIZED_MODES = frozenset({"dynamic", "int8", "int16x8", "qat", "int4", "ternary", "binary"})
_REFERENCE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _client(uri: str):
    require("mlflow", "mlflow", "the model registry (--registry, registry:, promote, rollback, models:/)")
    for noisy in ("alembic", "mlflow"):  # schema migrations and store notices: not the user's business
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


CHECK_TIMEOUT_S = 5  # a registry server that does not answer in this time is not there


def check_registry(uri: str) -> None:
    """Open the store at `uri` and make sure a build can write to it, before the build starts.

    A URI MLflow does not know, a store that cannot be written (a read-only SQLite file or folder)
    or a server that does not answer within CHECK_TIMEOUT_S is an InputError, exit 2.
    """
    require("mlflow", "mlflow", "the model registry (--registry, registry:, promote, rollback, models:/)")
    if uri.startswith("sqlite:///"):
        _check_sqlite_writable(Path(uri[len("sqlite:///"):]), uri)
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    saved = {v.name: os.environ.get(v.name) for v in (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT)}
    os.environ.update({MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "0", MLFLOW_HTTP_REQUEST_TIMEOUT.name: str(CHECK_TIMEOUT_S)})
    try:
        _client(uri).search_experiments(max_results=1)
    except EdgequantError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises anything from MlflowException to requests' errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--registry {uri}: cannot open the model registry ({first[:200]})") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_sqlite_writable(db: Path, uri: str) -> None:
    """The SQLite file (or, for a new one, its folder) takes a write, tried inside a transaction rolled back."""
    import sqlite3
    import tempfile

    def refuse(why: str) -> InputError:
        return InputError(f"--registry {uri}: {why}; a build could not register in it")

    if not db.exists():
        try:
            with tempfile.NamedTemporaryFile(dir=db.parent, prefix=".edgequant-registry-check-"):
                return
        except OSError as exc:
            raise refuse(f"cannot create the SQLite file in {db.parent} ({exc.strerror or exc})") from None
    try:
        connection = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=CHECK_TIMEOUT_S)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("CREATE TABLE edgequant_write_check (x)")  # a write, never committed
            connection.rollback()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise refuse(f"cannot write {db} ({exc})") from None


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Beside an SQLite store, `mlartifacts/<experiment>`; a server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):]).resolve()
    return (db.parent / "mlartifacts" / experiment).as_uri()


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    variant: str
    sha256: str
    candidate: bool


def log_build(result, uri: str) -> list[RegisteredVersion]:
    """Log a committed build (a pipeline.BuildResult) to the MLflow store at `uri` and register its variants."""
    client = _client(uri)
    from mlflow.exceptions import MlflowException

    try:
        return _log_build(client, result, uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BuildError(f"the build is in {result.output_dir}, but logging it to {uri} failed ({first[:300]})") from None


def _log_build(client, result, uri: str) -> list[RegisteredVersion]:
    from mlflow.entities import Metric, Param

    recipe, report, out = result.recipe, result.report, Path(result.output_dir)
    experiment = f"edgequant-{recipe.name}"
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(
        experiment, artifact_location=_artifact_location(uri, experiment)
    )
    source_sha = report.source_model["sha256"]
    run = client.create_run(experiment_id, run_name=f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}", tags={
        "edgequant.recipe": recipe.name, "edgequant.source_sha256": source_sha, "edgequant.passed": str(report.passed),
    })
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = []
    for v in report.variants:
        values = {"size_bytes": v.size_bytes, "gates_passed": float(all(g.passed for g in v.gates))}
        if v.evaluation is not None:
            values.update({k: getattr(v.evaluation, k) for k in ("top1", "agreement", "mse", "cosine")})
        values.update({f"latency_ms.{lat.device}": lat.ms for lat in v.latency})
        metrics += [Metric(f"{v.name}.{k}", float(x), now, 0) for k, x in values.items() if x is not None]
    params = [Param("recipe", recipe.name), Param("recipe_sha256", report.recipe["sha256"]),
              Param("source_sha256", source_sha), Param("edgequant_version", report.edgequant_version)]
    client.log_batch(run_id, metrics=metrics, params=params)
    client.log_text(run_id, recipe.model_dump_json(indent=2), "recipe.json")
    client.log_dict(run_id, {v.name: [g.model_dump() for g in v.gates] for v in report.variants}, "gates.json")
    for name in ("manifest.json", "report.json", "report.md"):
        client.log_artifact(run_id, str(out / name))
    manifest = json.loads((out / "manifest.json").read_text())
    registered = [_register_variant(client, run_id, out, manifest, v, source_sha) for v in report.variants]
    client.set_terminated(run_id, "FINISHED")
    return registered


def _register_variant(client, run_id: str, out: Path, manifest: dict, variant, source_sha: str) -> RegisteredVersion:
    """Log the variant's files under `models/<variant>/` and register them as a new version."""
    path = f"models/{variant.name}"
    client.log_artifact(run_id, str(out / variant.file), path)
    onnx = [a for a in manifest.get("onnx_artifacts", []) if a["variant"] == variant.name]
    for a in onnx:
        client.log_artifact(run_id, str(out / a["file"]), path)
    own = dict(manifest, artifacts=[a for a in manifest["artifacts"] if a["name"] == variant.name],
               onnx_artifacts=onnx)
    client.log_dict(run_id, own, f"{path}/manifest.json")  # push reads labels and preprocessing from it

    name = f"{manifest['recipe']['name']}-{variant.name}"
    kind = "quantized" if variant.mode in QUANTIZED_MODES else "float"
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name, tags={"edgequant.kind": kind, "edgequant.mode": variant.mode},
                                       description=f"edgequant {kind} variant {variant.name!r} ({variant.mode})")
    passed = bool(variant.gates) and all(g.passed for g in variant.gates)
    version = client.create_model_version(
        name, f"{client.get_run(run_id).info.artifact_uri}/{path}", run_id=run_id,
        tags={"edgequant.source_sha256": source_sha, "edgequant.sha256": variant.sha256,
              "edgequant.mode": variant.mode, "edgequant.kind": kind, "edgequant.file": variant.file,
              "edgequant.artifact_path": path, "edgequant.gates_passed": str(passed)},
    )
    if passed:
        client.set_registered_model_alias(name, CANDIDATE, version.version)
    return RegisteredVersion(name, str(version.version), variant.name, variant.sha256, passed)


def _history(client, name: str) -> list[str]:
    tag = _registered(client, name).tags.get(HISTORY_TAG, "")
    return [v for v in tag.split(",") if v]


def _registered(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise InputError(f"{name}: no such registered model in the registry") from None


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise InputError(f"{name}: no version {version} in the registry") from None


def _alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(name: str, version: str | int, uri: str, *, force: bool = False) -> str | None:
    """Point `production` at VERSION of NAME; returns the version that was production before (or None).

    A version whose gates failed is refused, naming them, unless `force`.
    """
    client = _client(uri)
    mv = _version(client, name, str(version))
    failed = failed_gates(client, mv)
    if failed and not force:
        raise InputError(f"{name} version {version}: its gates failed ({'; '.join(failed)}); "
                         "promote it anyway with --force")
    previous = _alias_version(client, name, PRODUCTION)
    history = _history(client, name)
    if previous != str(version):
        client.set_registered_model_alias(name, PRODUCTION, str(version))
        client.set_registered_model_tag(name, HISTORY_TAG, ",".join([*history, str(version)]))
    return previous


def failed_gates(client, mv) -> list[str]:
    """The gates VERSION failed, as 'gate: value > limit', from the build's gates.json (none: it passed or had none)."""
    if mv.tags.get("edgequant.gates_passed") != "False":
        return []
    import tempfile

    variant = mv.tags.get("edgequant.artifact_path", "").removeprefix("models/")
    try:
        with tempfile.TemporaryDirectory() as folder:
            gates = json.loads(Path(client.download_artifacts(mv.run_id, "gates.json", folder)).read_text())
    except Exception:  # noqa: BLE001 - a version logged by hand, or its run's artifacts gone
        return ["the build recorded them as failed; its gates.json cannot be read"]
    found = gates.get(variant, []) if isinstance(gates, dict) else []
    return [_gate_words(g) for g in found if isinstance(g, dict) and not g.get("passed", True)]


def _gate_words(gate: dict) -> str:
    if gate.get("not_measured"):
        return f"{gate.get('gate')}: not measured"
    sign = "<=" if str(gate.get("gate", "")).startswith("max") else ">="
    return f"{gate.get('gate')}: {gate.get('value'):.4g}, limit {sign} {gate.get('limit'):g}" \
        if isinstance(gate.get("value"), (int, float)) and isinstance(gate.get("limit"), (int, float)) \
        else str(gate.get("gate"))


def rollback(name: str, uri: str) -> tuple[str, str]:
    """Move `production` back to the version that was production before the current one: (from, to)."""
    client = _client(uri)
    history = _history(client, name)
    current = _alias_version(client, name, PRODUCTION)
    if current is None:
        raise InputError(f"{name}: no version is in production; nothing to roll back")
    if len(history) < 2:
        raise InputError(f"{name}: version {current} is the first production version; nothing to roll back to")
    history.pop()
    client.set_registered_model_alias(name, PRODUCTION, history[-1])
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    return current, history[-1]


def is_reference(model: str | Path) -> bool:
    return str(model).startswith("models:/")


def resolve(reference: str, dest: Path, uri: str | None = None) -> Path:
    """Download the version `reference` names (models:/NAME@ALIAS or models:/NAME/VERSION); its .tflite path."""
    match = _REFERENCE.match(reference)
    if not match:
        raise InputError(f"{reference}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    client = _client(uri or default_uri())
    name = match["name"]
    _registered(client, name)
    if match["alias"]:
        version = _alias_version(client, name, match["alias"])
        if version is None:
            raise InputError(f"{reference}: {name} has no version with the alias {match['alias']!r}")
    else:
        version = match["version"]
    mv = _version(client, name, version)
    local = Path(client.download_artifacts(mv.run_id, mv.tags["edgequant.artifact_path"], str(dest)))
    return local / mv.tags["edgequant.file"]
