"""The report page in a real browser: headless Chromium opens it, every plot loads, nothing errs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from tests.prerequisites import unavailable
from tests.unit.report.conftest import Built

WIDTH, HEIGHT = 1280, 7000
# Runs first in <head>: records script errors and, once everything has loaded, which images
# failed to decode, into a <pre> that --dump-dom prints.
CHECK = """<script>
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(String(e.message || e.target.src || e.type)), true);
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.dataset.plot || i.src.slice(0, 60));
  const out = document.createElement("pre");
  out.id = "report-check";
  out.textContent = JSON.stringify({images: images.length, plots: images.map((i) => i.dataset.plot), broken, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    unavailable("no `chromium` on PATH (Debian package `chromium`; `make chromium` installs it)")


def test_the_page_loads_every_plot_in_headless_chromium(built_report: Built, tmp_path: Path) -> None:
    browser = chromium()
    report = built_report.report
    figures = json.loads(report.figures_json.read_text())["figures"]
    assert len(figures) == 10  # every plot has data in this run, so none is left out
    assert report.notes == []

    html = report.page.read_text()
    assert "<script" not in html and 'src="http' not in html  # self-contained, nothing to fetch
    checked = report.directory / "check.html"
    checked.write_text(html.replace("<head>", "<head>" + CHECK, 1))
    shot = tmp_path / "screenshot.png"
    try:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WIDTH},{HEIGHT}",
             "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0",
             f"--screenshot={shot}", "--dump-dom", checked.as_uri()],
            capture_output=True, text=True, timeout=90,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{browser} did not finish within 90 s")
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="report-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the check script did not run; stderr:\n{done.stderr[-2000:]}"
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["broken"] == [] and check["errors"] == []
    assert check["plots"] == [f["id"] for f in figures]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "the page wrote to the console:\n" + "\n".join(console)

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    # Not blank: the plots' run colour (#1f77b4) covers a good many pixels.
    run_blue = np.all(np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.03, axis=-1)
    assert run_blue.sum() > 5000, f"only {run_blue.sum()} pixels of the run's colour"
