"""The output directory: whole builds switched into place at once, one build at a time.

    <out>/int8.tflite        -> .edgequant/current/int8.tflite    one link per top-level file of a build
    <out>/manifest.json      -> .edgequant/current/manifest.json
    <out>/.edgequant/current -> builds/<id>      the one link a commit replaces
    <out>/.edgequant/previous -> builds/<id>     the build before it, kept for readers still on it
    <out>/.edgequant/builds/<id>/                complete builds: only current and previous are kept
    <out>/.edgequant/builds/<id>.partial/        the build being written
    <out>/.edgequant/lock                        flock'd by the build writing <out>; holds its pid

A build writes all its files into its `.partial` folder; the artifacts a partial (`-v`) rebuild
keeps are hard-linked there from the current build. The folder is renamed complete, links for new
file names are added (they lead nowhere until the switch), then one `os.replace` of the `current`
link switches every file at once: that is the commit point. A reader that opens `<out>/X` gets the
old build or the new one, never a mix; one that reads several files and must see a single build
resolves the current build once (`current_build()`) and reads from there.

Whatever a crash or a kill leaves behind (a `.partial` folder, temporary links, links to files the
current build lacks, builds older than the previous one) the next build removes, under the lock,
before it starts. An output directory an older edgequant filled with plain files is adopted at the
first commit: its files are hard-linked into a build folder and each is replaced by a link to the
same bytes, so the old build stays readable, byte for byte, until the new one replaces it.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from edgequant.errors import BuildError, InputError
from edgequant.model.source_model import file_sha256
from edgequant.output.artifacts import MANIFEST, REPORT_JSON, read_manifest, with_provenance
from edgequant.process import fault_points
from edgequant.process.interrupts import commit_point, shielded

STATE_DIR = ".edgequant"
CURRENT, PREVIOUS, BUILDS, LOCK = "current", "previous", "builds", "lock"
PARTIAL = ".partial"
_TMP_LINK = ".edgequant-tmp-"  # a link being made, replaced into place under its real name
_BUILD_NAME = re.compile(r"\d{8}T\d{6}\.\d{6}Z-\d+(-adopted)?(\.partial)?")  # what _new_build_folder names


class OutputLockedError(InputError):
    """Another build is writing the same output directory."""


def current_build(output_dir: str | Path) -> Path:
    """The folder whose files `output_dir` shows: its current build, or itself if an older edgequant wrote it."""
    link = Path(output_dir) / STATE_DIR / CURRENT
    return link.resolve() if link.is_symlink() else Path(output_dir)


class Staging:
    """One build's output: holds the directory's lock, writes a new build folder, `commit()` makes it current."""

    def __init__(self, output_dir: str | Path, *, wait: bool = False):
        self.output_dir = Path(output_dir)
        self.state = self.output_dir / STATE_DIR
        self.builds = self.state / BUILDS
        self.committed = False
        check_owned(self.output_dir)
        try:
            self.builds.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(self.state / LOCK, self.output_dir, wait)
        except OSError as exc:
            raise _cannot_write(self.output_dir, exc) from None
        try:
            check_owned(self.output_dir)  # again, under the lock: what tidy() deletes must be edgequant's
            tidy(self.output_dir)
            self.previous = current_build(self.output_dir)
            self.dir = _new_build_folder(self.builds)
        except OSError as exc:
            os.close(self._lock)
            raise _cannot_write(self.output_dir, exc) from None
        except BaseException:
            os.close(self._lock)
            raise

    def path(self, name: str) -> Path:
        """Where to write `name` (relative, may include subfolders) in this build."""
        target = (self.dir / name).resolve()
        if not target.is_relative_to(self.dir.resolve()):
            raise InputError(f"{name!r}: output file names must stay inside {self.output_dir}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def carry_over(self, built: list[dict], dropped: set[str] = frozenset()) -> list[dict]:
        """The manifest's artifact entries: the current build's that this one did not rebuild (nor drop), then `built`.

        A kept artifact's file is hard-linked into this build and its entry, with its own provenance,
        is copied unchanged. One whose file is missing or no longer matches its SHA-256 is dropped.
        """
        previous = read_manifest(self.previous)
        if previous is None:
            return built
        rebuilt = {a["name"] for a in built} | set(dropped)
        kept = []
        for entry in previous.get("artifacts", []):
            if not isinstance(entry, dict) or entry.get("name") in rebuilt:
                continue
            source = self.previous / str(entry.get("file", ""))
            if not (source.resolve().is_relative_to(self.previous.resolve()) and source.is_file()
                    and file_sha256(source) == entry.get("sha256")):
                continue
            _link_or_copy(source, self.path(entry["file"]))
            kept.append(with_provenance(entry, previous))
        return kept + built

    def commit(self) -> None:
        """Make this build the directory's current one, all files at once."""
        try:
            fault_points.reached("staged")
            _sync(self.dir)
            complete = self.dir.with_name(self.dir.name.removesuffix(PARTIAL))
            os.rename(self.dir, complete)
            self.dir = complete
            if not (self.state / CURRENT).is_symlink():
                _adopt_plain_files(self.output_dir)
            for name in sorted(p.name for p in complete.iterdir()):
                _link(self.output_dir / name, f"{STATE_DIR}/{CURRENT}/{name}")
            fault_points.reached("linked")
            with commit_point():
                current = self.state / CURRENT
                if current.is_symlink():
                    _link(self.state / PREVIOUS, os.readlink(current))
                _link(current, f"{BUILDS}/{complete.name}")
                self.committed = True
        except OSError as exc:
            raise _write_error("cannot commit the build", exc, self.output_dir) from None
        try:
            _fsync_dir(self.state)
            fault_points.reached("switched")
            tidy(self.output_dir)
        except OSError:
            pass  # the build is in place; the next build finishes the tidying

    def discard(self) -> None:
        if not self.committed:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type, exc, _tb):
        with shielded():
            self.discard()
            os.close(self._lock)
        if isinstance(exc, OSError) and _is_write_failure(exc, self.output_dir):
            raise _write_error("cannot write the build", exc, self.output_dir) from None


def check_owned(output_dir: Path) -> None:
    """Raise InputError unless everything in `output_dir/.edgequant` is what edgequant makes there.

    edgequant owns that folder and deletes old builds from it: a link in it (to a folder of yours)
    or something of another kind must stop the build before anything is deleted, not be followed.
    """
    refuse_root(Path(output_dir))
    state = Path(output_dir) / STATE_DIR
    if not _present(state):
        return
    _expect(state, "folder")
    for name in (BUILDS, LOCK):
        if _present(state / name):
            _expect(state / name, "folder" if name == BUILDS else "file")
    for name in (CURRENT, PREVIOUS):
        link = state / name
        if not _present(link):
            continue
        if not link.is_symlink():
            _refuse(link, f"a {_kind(link)}, not the link to a build that edgequant makes")
        target = Path(os.readlink(link))
        if len(target.parts) != 2 or target.parts[0] != BUILDS or not _BUILD_NAME.fullmatch(target.name):
            _refuse(link, f"links to {target}, not to a build in {BUILDS}/")
    if _present(state / BUILDS):
        for entry in (state / BUILDS).iterdir():
            if not _BUILD_NAME.fullmatch(entry.name):
                _refuse(entry, "not a build edgequant made")
            _expect(entry, "folder")


def refuse_root(output_dir: Path) -> None:
    if output_dir.resolve() == Path("/"):
        raise InputError(f"{output_dir}: the root folder cannot be an output directory; name a folder of its own")


def _present(path: Path) -> bool:
    return path.is_symlink() or path.exists()


def _kind(path: Path) -> str:
    return "link" if path.is_symlink() else "folder" if path.is_dir() else "file"


def _expect(path: Path, kind: str) -> None:
    found = _kind(path)
    if found == "link":
        _refuse(path, f"a link (to {os.readlink(path)}), not the {kind} edgequant makes")
    if found != kind:
        _refuse(path, f"a {found}, not the {kind} edgequant makes")


def _refuse(path: Path, what: str) -> None:
    raise InputError(f"{path}: {what}; edgequant owns {STATE_DIR}/ and builds nothing here until you move it away "
                     "(it deletes nothing it did not create)")


def _cannot_write(output_dir: Path, exc: OSError) -> InputError:
    file = f" at {exc.filename}" if exc.filename else ""
    return InputError(f"{output_dir}: cannot write the output directory ({exc.strerror or exc}{file})")


def rebuild_from_current(output_dir: str | Path, change: Callable[[Path], None], *, wait: bool = False) -> Path:
    """Commit, as any build is, a new build holding the current build's files as `change(folder)` leaves them.

    The committed build's files are never rewritten in place: a reader on it keeps what it read.
    Returns the new build's folder.
    """
    with Staging(output_dir, wait=wait) as staging:
        for source in sorted(staging.previous.rglob("*")):
            if source.is_file() and not source.is_symlink():
                _link_or_copy(source, staging.path(str(source.relative_to(staging.previous))))
        change(staging.dir)
        staging.commit()
        return staging.dir


def _write_error(what: str, exc: OSError, output_dir: Path) -> BuildError:
    file = f" at {exc.filename}" if exc.filename else ""
    return BuildError(f"{output_dir}: {what} ({exc.strerror or exc}{file}); it still holds its previous build")


def _is_write_failure(exc: OSError, output_dir: Path) -> bool:
    """An error writing the output directory: one naming a path in it, or a full or read-only disk
    (a failed write() names no file)."""
    if exc.filename:
        return Path(os.fsdecode(exc.filename)).resolve().is_relative_to(output_dir.resolve())
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def tidy(output_dir: Path) -> None:
    """Remove what an interrupted or finished build leaves behind. Only call it holding the lock."""
    state = output_dir / STATE_DIR
    keep = {os.path.basename(os.readlink(state / n)) for n in (CURRENT, PREVIOUS) if (state / n).is_symlink()}
    for folder in (state / BUILDS).iterdir():
        if folder.name not in keep and _BUILD_NAME.fullmatch(folder.name) and _kind(folder) == "folder":
            shutil.rmtree(folder, ignore_errors=True)
    current = state / CURRENT
    for path in [*state.iterdir(), *output_dir.iterdir()]:
        if path.name.startswith(_TMP_LINK):
            if path.is_symlink():
                path.unlink()
        elif path.parent == output_dir and path.is_symlink():
            if os.readlink(path) == f"{STATE_DIR}/{CURRENT}/{path.name}" and not path.exists():
                path.unlink()  # made for a build that never became current, or a file the current one lacks
        elif path.parent == output_dir and path.is_file() and _same_file(path, current / path.name):
            _link(path, f"{STATE_DIR}/{CURRENT}/{path.name}")  # an adoption that was cut short


def _adopt_plain_files(output_dir: Path) -> None:
    """Make the plain build an older edgequant left in `output_dir` its first current build."""
    manifest = read_manifest(output_dir)
    if manifest is None:
        return
    listed = {str(a.get("file", "")) for a in manifest.get("artifacts", []) if isinstance(a, dict)}
    names = sorted(
        p.name for p in output_dir.iterdir()
        if (p.name in listed | {MANIFEST, REPORT_JSON, "report.md"} or p.suffix == ".png") and p.is_file() and not p.is_symlink()
    )
    folder = _new_build_folder(output_dir / STATE_DIR / BUILDS, tag="-adopted")
    for name in names:
        _link_or_copy(output_dir / name, folder / name)
    _sync(folder)
    adopted = folder.with_name(folder.name.removesuffix(PARTIAL))
    os.rename(folder, adopted)
    _link(output_dir / STATE_DIR / CURRENT, f"{BUILDS}/{adopted.name}")
    for name in names:
        _link(output_dir / name, f"{STATE_DIR}/{CURRENT}/{name}")


def _new_build_folder(builds: Path, tag: str = "") -> Path:
    """An empty `.partial` build folder, named by the time and this process."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = builds / f"{stamp}-{os.getpid()}{tag}{PARTIAL}"
    folder.mkdir()
    return folder


def _lock(path: Path, output_dir: Path, wait: bool) -> int:
    """An exclusive flock on `path`, holding this process's pid; released when the descriptor closes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # a link there is refused, never truncated
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise OutputLockedError(
                    f"{output_dir}: another build (pid {holder}) is writing this output directory; "
                    "wait for it to finish, or pass --wait"
                ) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _link(path: Path, target: str) -> None:
    """Point the symlink `path` at `target`, atomically, whatever was at `path` before (but a folder)."""
    if path.is_symlink() and os.readlink(path) == target:
        return
    tmp = path.with_name(_TMP_LINK + path.name)
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(source, dest)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _sync(folder: Path) -> None:
    """Flush a folder's files and the folder itself to disk, so a power cut cannot commit empty files."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
