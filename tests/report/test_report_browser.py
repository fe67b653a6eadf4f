"""The HTML report as a reader sees it: rendered by headless Chromium (Debian's ``chromium``; ``make
browser`` installs it where apt is usable), every embedded figure decoded and every section present."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

# Runs in the page after load: what the browser decoded, written onto <body> for --dump-dom to return.
PROBE = """<script>addEventListener('load', () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.sections = [...document.querySelectorAll('section > h2')].map(h => h.textContent).join('|');
});</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium on this machine: `make browser` installs Debian's chromium (needs apt and root)")


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                           "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=180)


@pytest.mark.xdist_group("quickstart")  # the same worker as the quickstart experiment test: one quickstart run
def test_report_renders_in_headless_chromium(quickstart_run, tmp_path):
    browser = chromium()
    html = (quickstart_run / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    proc = headless(browser, tmp_path / "profile", "--dump-dom", probe.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, proc.stdout[:500]
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    assert int(attrs["images"]) == html.count("<img ") > 10
    assert attrs["decoded"] == attrs["images"], "some embedded figures did not decode"
    expected = re.findall(r"^## (.+)$", (quickstart_run / "report.md").read_text(), flags=re.M)
    assert attrs["sections"].split("|") == expected and expected[0] == "Summary"
    shot = tmp_path / "report.png"
    proc = headless(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", probe.as_uri())
    assert proc.returncode == 0 and shot.stat().st_size > 50_000, proc.stderr[-2000:]
