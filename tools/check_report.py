"""Open a run's report.html in headless Chromium and check that its figures really render.

    python tools/check_report.py outputs/default/report.html

Exit code 0 when the transfer-matrix heatmap was drawn as SVG by plotly.js (what a reader sees), 1 when not,
2 when Chromium is missing (install Debian's `chromium`). A report nobody can see is not a report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=15000"]


def rendered_dom(html_path: Path) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise FileNotFoundError("no Chromium found; install it (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", html_path.resolve().as_uri()],
                             capture_output=True, text=True, timeout=180)
    return out.stdout


def check(html_path: Path) -> list[str]:
    """Problems found in the rendered page (empty list = fine)."""
    dom = rendered_dom(html_path)
    problems = []
    if 'class="main-svg"' not in dom:
        problems.append("no plotly SVG at all: figures did not render")
    if "heatmaplayer" not in dom:
        problems.append("the transfer-matrix heatmap was not drawn")
    return problems


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/default/report.html")
    try:
        problems = check(path)
    except FileNotFoundError as e:
        print(f"check_report: {e}", file=sys.stderr)
        sys.exit(2)
    for p in problems:
        print(f"check_report: {path}: {p}", file=sys.stderr)
    print(f"check_report: {path}: {'OK, heatmap rendered' if not problems else 'FAILED'}")
    sys.exit(1 if problems else 0)
