"""report.html: one self-contained page, written by every build, rendered for real in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from edgequant.cli import main
from edgequant.report.html import REPORT_HTML
from tests.conftest import REPO
from tests.test_report import png_size

WINDOW = (1280, 2400)
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const drawn = images.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0);
  const tables = [...document.querySelectorAll("table.device-table")].filter(t => t.getBoundingClientRect().height > 0);
  document.body.insertAdjacentHTML("beforeend",
    `<p id="render-check">images ${drawn.length}/${images.length} device-tables ${tables.length}</p>`);
});
</script>"""


def chromium(page, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a local file, with everything that could reach the network turned off."""
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is needed (scripts/setup.sh installs it)"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
             *args, page.as_uri()],
            capture_output=True, text=True, timeout=180, check=False,
        )


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (errors, refused loads), from Chromium's log."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def build_dir(fmnist_build):
    return fmnist_build.output_dir


@pytest.mark.slow
def test_every_build_writes_a_self_contained_report_html(build_dir):
    html = (build_dir / REPORT_HTML).read_text()
    pngs = sorted(build_dir.glob("*.png"))
    assert len(pngs) >= 2 and html.count('<img src="data:image/png;base64,') == len(pngs)
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|#)[^"']*|url\((?!data:)|@import""", html)
    assert not external, external
    assert "Content-Security-Policy" in html and "default-src 'none'" in html and "<script" not in html
    for device, cores in (("rpi4", 4), ("pixel4", 4)):
        table = re.search(rf'<table id="device-table-{device}".*?</table>', html, re.S).group(0)
        for threads in range(1, cores + 1):
            assert f"{threads} thread" in table
        assert "int8" in table and "bit-exact" in table and "fits" in table and " MB" in table
    # Each estimate with its uncertainty: an interval in every cell; the heading names the runtime it is for
    for device, cores in (("rpi4", 4), ("pixel4", 8)):
        table = re.search(rf'<table id="device-table-{device}".*?</table>', html, re.S).group(0)
        assert len(re.findall(r"<td class=\"n\">[\d.]+ \([\d.]+–[\d.]+\)</td>", table)) == 5 * cores  # variants x threads
        assert re.search(rf'<h2 id="device-{device}">[^<]*estimates for LiteRT \+ XNNPACK</h2>', html)
    verdict = re.search(r'<section class="verdict[^"]*" id="verdict">.*?</section>', html, re.S).group(0)
    assert "On <b>rpi4</b>" in verdict and "On <b>pixel4</b>" in verdict and "ship <b>" in verdict
    assert "per-layer quantization error" in html and "max_size_kib" in html  # layer table, gates


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(build_dir, tmp_path):
    page = tmp_path / REPORT_HTML
    html = (build_dir / REPORT_HTML).read_text()
    page.write_text(html)
    shot = tmp_path / "report.png"
    run = chromium(page, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert png_size(shot) == WINDOW and shot.stat().st_size > 50_000  # a page with tables and plots, not blank
    assert console_messages(run.stderr) == []  # no console errors, no refused loads

    # The same page with a check script (the report itself carries none, and its CSP would refuse one).
    checked = tmp_path / "checked.html"
    checked.write_text(html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
                       .replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = chromium(checked, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = len(list(build_dir.glob("*.png")))
    assert f'<p id="render-check">images {images}/{images} device-tables 2</p>' in dom.stdout
    assert 'id="device-table-rpi4"' in dom.stdout and 'id="variants"' in dom.stdout
    assert console_messages(dom.stderr) == []


@pytest.mark.slow
def test_the_console_check_sees_a_refused_load(build_dir, tmp_path):
    """The control for the test above: an external image and an inline script are refused, and that is seen."""
    page = tmp_path / "bad.html"
    html = (build_dir / REPORT_HTML).read_text()
    page.write_text(html.replace("</body>", '<img src="http://127.0.0.1:9/x.png"><script>1</script></body>'))
    messages = console_messages(chromium(page, "--dump-dom").stderr)
    assert any("http://127.0.0.1:9/x.png" in m and "Content Security Policy" in m for m in messages), messages
    assert any("inline script" in m and "Content Security Policy" in m for m in messages), messages


@pytest.mark.slow
def test_report_command_rerenders_html_and_opens_it(build_dir, tmp_path, capsys):
    copy = tmp_path / "build"
    shutil.copytree(build_dir, copy, symlinks=True)
    (copy / REPORT_HTML).unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / REPORT_HTML).read_text() == (build_dir / REPORT_HTML).read_text()

    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    run = subprocess.run([sys.executable, "-m", "edgequant", "report", str(copy), "--open"],
                         env=dict(env, BROWSER=f"{browser} %s", PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert opened.read_text().strip() == (copy / REPORT_HTML).resolve().as_uri()
    assert f"opened {(copy / REPORT_HTML).resolve()}" in run.stdout

    run = subprocess.run([sys.executable, "-m", "edgequant", "report", str(copy), "--open"],
                         env=dict(env, BROWSER="false %s", PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert f"no web browser found: open {(copy / REPORT_HTML).resolve()}" in run.stdout
