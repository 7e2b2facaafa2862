"""How long-running stages report progress. The library takes any `Progress`; the CLI passes a rich one."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]: ...

    def log(self, message: str) -> None: ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_NullTask":
        return self

    def __exit__(self, *exc) -> None:
        pass


class NullProgress:
    """Reports nothing: the default for library calls."""

    def task(self, description: str, total: int | None = None) -> _NullTask:
        return _NullTask()

    def log(self, message: str) -> None:
        pass
