"""The fleet HTML report in a real headless browser (Debian's chromium driven by Playwright; skipped only when
/usr/bin/chromium or playwright is missing): the table sorts on a header click, the filter hides rows, the
leaderboard and the SVG charts render, and the page requests nothing but itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fleet.fleet_fixtures import make_fleet
from weightaudit.cli import cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def page(tmp_path: Path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS, offline=True)
        requests: list[str] = []
        context.on("request", lambda request: requests.append(request.url))
        yield context.new_page(), requests
        context.close()


def test_html_report_sorts_filters_and_renders_offline(tmp_path: Path, page) -> None:
    make_fleet(tmp_path / "fleet", 10)
    db, html = tmp_path / "f.db", tmp_path / "fleet.html"
    runner = CliRunner()
    runner.invoke(cli, ["batch", str(tmp_path / "fleet"), "--db", str(db), "-q", "-j", "2"])
    assert runner.invoke(cli, ["report", str(db), "-o", str(html)]).exit_code == 0
    browser, requests = page
    errors: list[str] = []
    browser.on("pageerror", lambda exc: errors.append(str(exc)))
    browser.goto(html.as_uri())
    first_cells = "#releases tbody tr td:first-child"

    def column(selector: str) -> list[str]:
        return browser.locator(selector).all_inner_texts()

    assert len(column(first_cells)) == 10
    browser.click("#releases th[data-col='2']")          # exit code, ascending
    exits = [int(x) for x in column("#releases tbody tr td:nth-child(3)")]
    assert exits == sorted(exits) and exits[0] == 0 and exits[-1] == 1
    browser.click("#releases th[data-col='2']")          # descending
    assert [int(x) for x in column("#releases tbody tr td:nth-child(3)")] == sorted(exits, reverse=True)
    browser.click("#releases th[data-col='0']")
    names = column(first_cells)
    assert names == sorted(names)
    assert browser.locator("#leaderboard tbody tr").count() == 10
    scores = [float(x) for x in column("#leaderboard tbody tr td:nth-child(3)")]
    assert scores == sorted(scores, reverse=True)
    for chart in ("#rules-chart", "#verdict-chart"):
        assert browser.locator(f"{chart} rect").count() >= 2
        box = browser.locator(chart).bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 10
    browser.fill("#filter", "pickle")
    visible = browser.locator("#releases tbody tr:not(.hidden)")
    assert visible.count() == 2 and all("pickle" in t for t in visible.all_inner_texts())
    assert errors == []
    assert requests == [html.as_uri()]
