"""What several recipes built in one call (`edgequant build A.yaml B.yaml ...`) have in common.

Each source model is exported once for all of them, and one child process exports and converts for all of
them (edgequant.quantization.convert_worker: TensorFlow is imported there once). Emulated device runs are
shared through the cache of emulated results (edgequant.devices.run_cache): a model whose bytes another
recipe already built is counted and checked once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgequant.model.source_model import ExportedModel, file_sha256
from edgequant.process.interrupts import temporary_dir
from edgequant.quantization.convert_worker import ConversionWorker


class SharedWork:
    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.worker = ConversionWorker()
        self._exports: dict[tuple, ExportedModel] = {}

    def export(self, path: Path, input_shape: list[int] | None, *, trust_code: bool,
               custom_objects: list[str] = ()) -> tuple[ExportedModel, bool]:
        """The model exported for the builds, and whether an earlier build of this call exported it."""
        key = (str(Path(path).resolve()), file_sha256(path), tuple(input_shape) if input_shape else None, trust_code,
               tuple(custom_objects))
        if key in self._exports:
            return self._exports[key], True
        folder = self.work_dir / f"export-{len(self._exports)}"
        folder.mkdir()
        self._exports[key] = self.worker.export(path, folder, input_shape, trust_code=trust_code,
                                                custom_objects=custom_objects)
        return self._exports[key], False


@contextmanager
def shared_work() -> Iterator[SharedWork]:
    with temporary_dir("edgequant-shared-") as folder:
        shared = SharedWork(folder)
        with shared.worker:  # started now; killed at once if a build is interrupted
            yield shared
