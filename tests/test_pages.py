"""What a person sees, checked as a person would: the search report and two pages of the documentation site rendered
in headless Chromium (Debian's ``chromium``) at 1280 and 400 pixels wide; none may scroll sideways outside a
scrolling container (a wide table scrolls in its own box, the page does not). CI installs Chromium (``.ci/run``);
elsewhere the test skips with that reason when it is missing."""

import json
import os
import random
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import optuna
import pytest
from optuna.trial import create_trial

from densecell.cell.space import SearchSpace, load_cell
from densecell.search import DPCSpace
from densecell.search.record import TrialRecord

ROOT = Path(__file__).parent.parent
CHROMIUM = next(filter(None, (shutil.which(name) for name in ("chromium", "chromium-browser"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                                reason="headless Chromium (Debian's chromium package) is not installed")

PROBE = """<script>addEventListener('load', () => {
  const width = document.documentElement.clientWidth, wide = [];
  const contained = el => { for (let p = el.parentElement; p; p = p.parentElement) { const s = getComputedStyle(p);
    if (['auto', 'scroll', 'hidden'].includes(s.overflowX) || s.position === 'fixed') return true; } return false; };
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width && box.right > width + 1 && !contained(el) && getComputedStyle(el).position !== 'fixed')
      wide.push(el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' to ' + Math.round(box.right));
  }
  document.body.setAttribute('data-probe', JSON.stringify({page: document.documentElement.scrollWidth, width,
                                                           wide: wide.slice(0, 8)}));
});</script>"""


def rendered(page: Path, width: int) -> dict:
    """The page laid out at ``width`` pixels: its scroll width and the elements past the right edge that no
    scrolling container holds (a probe beside the page, so that its relative links resolve)."""
    probe = page.with_name(f"{page.stem}.probe-{width}.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--window-size={width},1000", "--virtual-time-budget=4000", "--dump-dom",
                               probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    return json.loads(unescape(found.group(1)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of a small study: ten cells, two re-ranked, one no better than the lone 1x1."""
    from densecell.search.report import write_report

    folder = tmp_path_factory.mktemp("report")
    study = optuna.create_study(study_name="pages", storage=f"sqlite:///{folder / 'study.db'}",
                                direction="maximize")
    study.set_user_attr("densecell", json.dumps({"cache_dir": str(folder / "cache"), "trials": 10,
                                                 "sampler": "predictor", "proxy": {"iterations": 100}}))
    space, rng = SearchSpace(), random.Random(0)
    cells = [load_cell("cityscapes-top1")] + [space.sample(seed) for seed in range(9)]
    for number, cell in enumerate(cells):
        value = 0.4 if number == 9 else 0.5 + rng.random() / 4
        attrs = TrialRecord(cell=cell, params=1000 + number, madds=2_000_000 * (1 + number), host="h", pid=1,
                            proxy_miou=value, seconds=3.0).to_attrs()
        study.add_trial(create_trial(params=DPCSpace().params_of(cell),
                                     distributions=DPCSpace(space).distributions(), value=value, user_attrs=attrs))
    study.set_user_attr("full_miou:0", 0.41)
    study.set_user_attr("full_miou:1", 0.38)
    study.set_user_attr("baseline_miou", 0.4)
    return write_report(study, folder)["html"]


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 400])
def test_the_report_does_not_scroll_sideways(report, width):
    found = rendered(report, width)
    assert found["page"] <= found["width"] and not found["wide"], found


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 400])
@pytest.mark.parametrize("page", ["guides/which-search.html", "_generated/results.html"])
def test_the_documentation_does_not_scroll_sideways(site, page, width):
    folder, code, errors = site
    assert code == 0, errors[-3000:]
    found = rendered(folder / page, width)
    assert found["page"] <= found["width"] and not found["wide"], found
