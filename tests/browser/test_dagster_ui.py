"""A real headless Chromium drives the UIs that `ffr ui` starts (issue 7):

- the Dagster asset graph shows every asset of the lineage (keys read from the code location, so
  the test follows the graph as it grows);
- materializing a small asset from the UI (raw_dialogues, limited to 20 PhotoChat dialogues
  through the launchpad) succeeds, its run page shows Success, and the rows are in Postgres;
- the MLflow UI lists the training runs logged through ffr_lib.tracking.

Never skipped: without Chromium it fails and says to run `.ci/install-chromium.sh`.
Screenshots go to the test's temp folder (printed with -s).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser.chrome import find_binaries, start_chrome, wait_for
from browser.ui_process import UiProcess, alive, describe, running_ui

pytestmark = pytest.mark.timeout(420)

SMALL_ASSET = "raw_dialogues"
SMALL_RUN_CONFIG = """\
ops:
  raw_dialogues:
    config:
      sources:
        - format: photochat
          limit: 20
"""
TRAINING_RUNS = {"f2rvlm-sft-browser-check": 0.42, "f2rvlm-grpo-browser-check": 0.61}


def lineage_asset_names() -> set[str]:
    """Every asset key of the code location, as the UI writes it."""
    from ffr_assets.definitions import defs

    return {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}


def graphql(base_url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def log_training_runs(home: Path, tracking_uri: str) -> str:
    """Log two training-like runs through the stack's MLflow server (as a cluster deployment
    does, MLFLOW_TRACKING_URI=http://...); return the experiment id."""
    import mlflow

    from ffr_lib.tracking import start_run

    experiment_id = ""
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FFR_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        try:
            for name, reward in TRAINING_RUNS.items():
                with start_run("f2rvlm", run_name=name, params={"lr": 1e-4, "lora_r": 8}) as run:
                    mlflow.log_metric("reward_f1", reward)
                    experiment_id = run.info.experiment_id
        finally:
            # This server goes away with the fixture: later tests must not talk to it.
            mlflow.set_tracking_uri(previous)
            mlflow.set_registry_uri(previous)
    return experiment_id


class Stack:
    def __init__(self, ui: UiProcess, browser: Any, shots: Path, db_url: str, experiment: str):
        self.ui, self.browser, self.shots = ui, browser, shots
        self.db_url, self.experiment_id = db_url, experiment

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.browser.save_screenshot(str(path))
        print(f"screenshot: {path}")
        return path


@pytest.fixture(scope="module")
def stack(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`ffr ui` on a temp FFR_HOME with its own database, plus a headless Chromium."""
    binaries = find_binaries()
    if isinstance(binaries, str):
        pytest.fail(binaries, pytrace=False)
    browser_bin, driver_bin = binaries

    from conftest import TEMPLATE_DB

    from ffr_lib.db import connect, dispose_engines

    root = tmp_path_factory.mktemp("browser")
    home = root / "home"
    shots = root / "screenshots"
    shots.mkdir()
    name = f"browser_{uuid.uuid4().hex[:10]}"
    with connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    db_url = pg_server.url(name)
    browser = None
    try:
        with running_ui(home, {"FFR_DATABASE_URL": db_url}) as ui:
            ready = ui.wait_ready(timeout=180)
            print(f"ffr ui ready in {ready:.1f} s")
            experiment = log_training_runs(home, ui.mlflow_url)
            # The one-time "join the community" dialog would cover the page.
            graphql(ui.dagster_url, "mutation { setNuxSeen }")
            browser = start_chrome(browser_bin, driver_bin, root / "chrome-profile")
            yield Stack(ui, browser, shots, db_url, experiment)
            browser.quit()
            browser = None
            ui.stop(timeout=60)
            assert ui.popen.returncode == 0, ui.output
            left = [describe(p) for p in ui.tree.values() if alive(p)]
            assert not left, f"processes left after stopping ffr ui: {left}"
    finally:
        if browser is not None:
            browser.quit()
        dispose_engines()
        with connect(pg_server.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_asset_graph_shows_every_asset_of_the_lineage(stack: Stack) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    expected = lineage_asset_names()
    assert SMALL_ASSET in expected
    browser = stack.browser
    # The graph renders only the nodes in view, and expanding the groups does not zoom it out
    # again: a tall window keeps the whole expanded lineage (13 assets in 4 groups) in view.
    size = browser.get_window_size()
    browser.set_window_size(size["width"], max(size["height"], 2000))
    browser.get(f"{stack.ui.dagster_url}/asset-groups")
    wait_for(
        lambda: browser.find_elements("css selector", "svg foreignObject"),
        60,
        "the asset graph to render",
    )
    # Groups start collapsed; Alt+E is the graph's own "Expand all groups" shortcut.
    ActionChains(browser).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()

    def shown() -> set[str]:
        # Labels of the rendered graph nodes (HTML inside the SVG's foreignObjects). Zoomed in,
        # long names are middle-truncated and the full name is in data-tooltip; zoomed out (a
        # big graph), nodes are minimal boxes whose text is the name.
        return set(
            browser.execute_script(
                "const names = new Set();"
                "document.querySelectorAll('svg foreignObject').forEach(node => {"
                "  node.querySelectorAll('[data-tooltip]').forEach("
                "    e => names.add(e.getAttribute('data-tooltip').trim()));"
                "  node.querySelectorAll('*').forEach(e => e.childNodes.forEach(c => {"
                "    if (c.nodeType === Node.TEXT_NODE && c.textContent.trim())"
                "      names.add(c.textContent.trim());"
                "  }));"
                "});"
                "return Array.from(names);"
            )
        )

    try:
        wait_for(lambda: expected <= shown(), 60, f"graph nodes for all of {sorted(expected)}")
        assert expected <= shown()
    finally:
        stack.shot("asset_graph")
        browser.set_window_size(size["width"], size["height"])


def test_materializing_a_small_asset_from_the_ui_succeeds(stack: Stack) -> None:
    from selenium.webdriver.common.by import By

    from ffr_lib.store import count_rows

    browser, base = stack.browser, stack.ui.dagster_url
    browser.get(f"{base}/assets/{SMALL_ASSET}")

    def materialize_menu() -> Any:
        buttons = browser.find_elements(By.TAG_NAME, "button")
        texts = [b.text.strip() for b in buttons]
        return buttons[texts.index("Materialize") + 1] if "Materialize" in texts else None

    def open_launchpad() -> bool:
        # The arrow next to "Materialize" opens a menu with "Open launchpad" (the run config
        # editor). The page re-renders while its data loads, so a click can land on a stale or
        # covered element: retry the whole gesture until the item shows up.
        arrow = materialize_menu()
        if arrow is None:
            return False
        arrow.click()
        item = wait_for(
            lambda: browser.find_element(By.XPATH, "//*[normalize-space(text())='Open launchpad']"),
            5,
            "the 'Open launchpad' menu item",
        )
        item.click()
        return True

    wait_for(open_launchpad, 90, "the launchpad to open", interval=1)
    wait_for(
        lambda: browser.execute_script("return !!document.querySelector('.CodeMirror')"),
        30,
        "the launchpad config editor",
    )
    browser.execute_script(
        "document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0])",
        SMALL_RUN_CONFIG,
    )
    wait_for(
        lambda: browser.find_element(By.XPATH, "//*[normalize-space(text())='No errors']"),
        30,
        "the launchpad to accept the config",
    )
    stack.shot("launchpad")
    before = {r["runId"] for r in _runs(base)}
    # The launchpad's own button (in the dialog overlay, not the page's one behind it); it
    # stays disabled until the config has been validated against the code location.
    launch = wait_for(
        lambda: next(
            b
            for b in browser.find_elements(
                By.XPATH,
                "//div[contains(@class, 'bp5-overlay-content')]"
                "//button[normalize-space()='Materialize']",
            )
            if b.is_enabled()
        ),
        60,
        "the launchpad's Materialize button to be enabled",
    )
    launch.click()
    run = wait_for(
        lambda: next((r for r in _runs(base) if r["runId"] not in before), None),
        60,
        "the launched run to be recorded",
    )
    started = time.monotonic()
    browser.get(f"{base}/runs/{run['runId']}")
    try:
        wait_for(
            lambda: browser.find_element(By.XPATH, "//*[normalize-space(text())='Success']"),
            240,
            f"run {run['runId']} to show Success",
            interval=2,
        )
    finally:
        stack.shot("run_page")
        status = {r["runId"]: r["status"] for r in _runs(base)}.get(run["runId"])
        print(f"run {run['runId']}: {status} after {time.monotonic() - started:.1f} s")
    assert status == "SUCCESS"
    assert [SMALL_ASSET] in [key["path"] for key in run["assetSelection"]]
    # The run really wrote what the config asked for into the stack's database.
    assert count_rows(stack.db_url)["dialogues"] == 20


def _runs(base: str) -> list[dict[str, Any]]:
    data = graphql(
        base,
        "{ runsOrError(limit: 20) { ... on Runs { results "
        "{ runId status assetSelection { path } } } } }",
    )
    return data["runsOrError"]["results"]


def test_mlflow_ui_lists_the_training_runs(stack: Stack) -> None:
    from selenium.webdriver.common.by import By

    browser = stack.browser
    browser.get(f"{stack.ui.mlflow_url}/#/experiments/{stack.experiment_id}/runs")

    def listed() -> bool:
        body = browser.find_element(By.TAG_NAME, "body").text
        return all(name in body for name in TRAINING_RUNS)

    try:
        wait_for(listed, 90, f"MLflow to list {sorted(TRAINING_RUNS)}")
    finally:
        stack.shot("mlflow_runs")
    assert "f2rvlm" in browser.find_element(By.TAG_NAME, "body").text
