"""Temporary folders of killed runs are swept by the next run; live runs' and foreign folders are kept."""

import os
import signal
import subprocess
import sys
import tempfile

from edgequant.process.scratch import scratch_prefix, sweep_orphans

MAKE_SCRATCH = (
    "import sys, tempfile, time\n"
    "from edgequant.process.scratch import scratch_prefix\n"
    "print(tempfile.mkdtemp(prefix=scratch_prefix('build')), flush=True)\n"
    "time.sleep(600)\n"
)


def _process_with_scratch(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", MAKE_SCRATCH], stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().strip()


def test_a_killed_runs_folder_is_swept_and_a_live_ones_kept(tmp_path):
    killed, killed_dir = _process_with_scratch(tmp_path)
    live, live_dir = _process_with_scratch(tmp_path)
    try:
        (tmp_path / killed_dir / "half-written.tflite").write_bytes(b"\0" * 100)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        mine = tempfile.mkdtemp(prefix=scratch_prefix("api"), dir=tmp_path)
        foreign = tmp_path / "edgequant-notes"  # not a scratch name: never touched
        foreign.mkdir()
        removed = sweep_orphans(tmp_path)
        assert [str(p) for p in removed] == [killed_dir]
        assert not os.path.exists(killed_dir)
        assert os.path.isdir(live_dir) and os.path.isdir(mine) and foreign.is_dir()
    finally:
        live.kill()
        live.wait()
    assert [str(p) for p in sweep_orphans(tmp_path)] == [live_dir]


def test_the_command_line_sweeps_at_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"edgequant-arm-{dead.stdout.strip()}-x1y2"
    orphan.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "edgequant", "--version"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert not orphan.exists()
