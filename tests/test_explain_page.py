"""The interactive explain page in a real browser: headless Chromium (the system's,
Debian's ``chromium``) driven by Playwright, the page loaded from ``file://``.

Each seed network of the course gives a page that loads nothing, logs no error, steps
through every stage with the live region and the shown numbers those of the embedded
JSON, opens the chain of a weight and a bias whose product is the engine's gradient,
plays the training back, and fits a 360 px screen. Screenshots go to
``$BACKPROP_SCREENSHOTS`` (default: the test's temporary folder)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need Playwright (the test extra)")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (apt-get install chromium)")

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {  # the course's seed networks
    "000-sigmoid-bce": ["--layers", "2,2,1", "--output", "sigmoid", "--loss", "bce", "--y", "1"],
    "001-sigmoid-softmax-ce": [],
    "003-no-bias-mse": ["--no-bias", "--output", "identity", "--loss", "mse", "--y", "0.5,-0.5"],
}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        yield launched
        launched.close()


def page_of(args, folder, name):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "backprop", "explain", "--format", "html", "--steps", "20", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    path = folder / f"{name}.html"
    path.write_text(done.stdout)
    return path


def opened(browser, path, width=1000):
    """The page at ``path``, failing the test on any console error, page error or request
    that is not for a file: or data: URL."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: problems.append(request.url) if not request.url.startswith(("file:", "data:")) else None)
    page.goto(path.as_uri())
    return page, problems


def value_of(doc, stage, numbers=None):
    """The numbers a stage shows, where the page reads them: the step's (or the trace's)
    ``to_dict`` sections, else the stage's own value."""
    numbers = numbers or doc
    if stage["section"] == "loss":
        return numbers["loss_value"]
    held = numbers if stage["section"] == "input" else numbers.get(stage["section"], {})
    return held.get(stage["key"], stage.get("value"))


def cells(value):
    """The cells the page's table shows for ``value``: every entry, or a large matrix's
    corners (3 first and 2 last rows and columns) around gaps."""
    rows = value if isinstance(value, list) and value and isinstance(value[0], list) else [value] if isinstance(value, list) else [[value]]

    def cut(items):
        return items if len(items) <= 8 else [*items[:3], None, *items[-2:]]

    shown = []
    for row in cut(rows):
        columns = cut(rows[0] if row is None else row)
        shown += ["\u2026" if v is None and k == 3 and len(rows[0]) > 8 else "\u22ee" if row is None else fmt(v)
                  for k, v in enumerate(columns)]
    return shown


def fmt(value):
    """The page's number format (page.js's fmt), for comparing what it shows."""
    if value is None:
        return "\u2014"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return repr(float(f"{value:.6g}")).removesuffix(".0")
    mantissa, exponent = f"{value:.4e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


@pytest.mark.parametrize("name", SEEDS)
def test_the_page_steps_through_every_stage_and_shows_the_engines_numbers(browser, tmp_path, name):
    path = page_of(SEEDS[name], tmp_path, name)
    assert path.stat().st_size < 1_000_000
    page, problems = opened(browser, path)
    doc = json.loads(page.locator("#backprop-trace").text_content())
    status, next_stage = page.get_by_role("status"), page.get_by_role("button", name="Next stage")
    for k, stage in enumerate(doc["stages"]):
        assert status.inner_text() == f"{stage['title']}: {stage['formula']}"
        shown = page.locator('#stage table[data-role="value"] td').all_inner_texts()
        assert shown == cells(value_of(doc, stage)), stage["symbol"]
        if "checked" in stage:
            assert page.locator("#stage .ok").inner_text().startswith("\u2713")
        if stage["key"].startswith("dW"):  # the numbers put in: dz[l] and the layer's input
            l = int(stage["key"][2:])
            source = ("x", doc["x"]) if l == 1 else (f"a[{l - 1}]", doc["forward"][f"a{l - 1}"])
            for symbol, value in ((f"dz[{l}]", doc["backward"][f"dz{l}"]), source):
                assert page.locator(f'#stage [data-symbol="{symbol}"] td').all_inner_texts() == cells(value)
        if k % 2:
            next_stage.click()
        else:
            page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    assert status.inner_text() == f"{doc['stages'][-2]['title']}: {doc['stages'][-2]['formula']}"
    page.screenshot(path=str(_shots(tmp_path) / f"{name}-stages.png"), full_page=True)
    assert problems == []


@pytest.mark.parametrize("name", SEEDS)
def test_every_parameter_is_reachable_by_keyboard_and_its_chain_gives_the_engines_gradient(browser, tmp_path, name):
    page, problems = opened(browser, page_of(SEEDS[name], tmp_path, name))
    doc = json.loads(page.locator("#backprop-trace").text_content())
    places = page.locator("[data-place]")
    assert sorted(places.evaluate_all("nodes => nodes.map(n => n.dataset.place)")) == sorted(doc["chains"])
    page.get_by_role("button", name="Next stage").focus()
    reached = set()
    for _ in range(len(doc["chains"]) + 10):  # Tab walks through every weight and bias
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.dataset ? document.activeElement.dataset.place || '' : ''"))
    assert set(doc["chains"]) <= reached
    for place, chain in doc["chains"].items():
        entry = page.locator(f'[data-place="{place}"]')
        assert entry.get_attribute("aria-label").startswith(place)
        entry.focus()
        page.keyboard.press("Enter")
        panel = page.get_by_role("region", name=f"Chain of derivatives for {place}")
        assert panel.locator('[data-role="product"]').inner_text() == f"product = {fmt(chain['product'])}"
        assert panel.locator('[data-role="gradient"]').inner_text() == f"the engine's gradient = {fmt(chain['gradient'])}"
        assert abs(chain["product"] - chain["gradient"]) <= 1e-12 * max(1.0, abs(chain["gradient"]))
        assert "\u2713 agrees" in panel.locator('[data-role="numerical"]').inner_text()
    page.screenshot(path=str(_shots(tmp_path) / f"{name}-chain.png"), full_page=True)
    assert problems == []


def test_the_training_plays_back_the_engines_steps_and_the_page_fits_360_px(browser, tmp_path):
    page, problems = opened(browser, page_of(SEEDS["001-sigmoid-softmax-ce"], tmp_path, "001"), width=360)
    doc = json.loads(page.locator("#backprop-trace").text_content())
    slider = page.get_by_role("slider", name="Training step")
    page.locator('[data-place="W[2][1,2]"]').focus()
    page.keyboard.press("Enter")
    slider.fill(str(len(doc["steps"]) - 1))
    last = doc["steps"][-1]
    panel = page.get_by_role("region", name="Chain of derivatives for W[2][1,2]")  # the chain at that step
    assert panel.get_by_text(f"At training step {len(doc['steps'])}.").count() == 1
    assert panel.locator('[data-role="gradient"]').inner_text() == f"the engine's gradient = {fmt(last['chains']['W[2][1,2]']['gradient'])}"
    assert last["chains"]["W[2][1,2]"]["gradient"] == last["trace"]["backward"]["dW2"][0][1]
    assert page.locator("#training-out").inner_text() == f"step {len(doc['steps'])} of {len(doc['steps'])}: loss {fmt(last['loss'])}"
    assert last["loss"] < doc["steps"][0]["loss"]
    stage = next(s for s in doc["stages"] if s["key"] == "dW2")
    while page.get_by_role("status").inner_text() != f"{stage['title']}: {stage['formula']}":
        page.get_by_role("button", name="Next stage").click()
    shown = page.locator('#stage table[data-role="value"] td').all_inner_texts()
    assert shown == cells(last["trace"]["backward"]["dW2"])
    slider.fill("0")
    page.get_by_role("button", name="Play").click()
    sync_api.expect(slider).to_have_value(str(len(doc["steps"]) - 1), timeout=20000)  # played to the end
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=str(_shots(tmp_path) / "001-360px.png"), full_page=True)
    assert problems == []


def test_a_trained_digits_model_shows_its_layers_as_blocks_its_example_as_an_image_and_every_stage(browser, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "backprop", "train", "--epochs", "2", "--out", "digits.npz"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    path = page_of(["--model", str(tmp_path / "digits.npz"), "--data", "digits", "--index", "7"], tmp_path, "digits")
    assert path.stat().st_size < 1_000_000
    page, problems = opened(browser, path)
    doc = json.loads(page.locator("#backprop-trace").text_content())
    assert doc["sizes"] == [64, 128, 10] and doc["image"] == [8, 8]
    assert page.get_by_role("img", name="The input as a 8x8 image").locator("rect").count() == 64
    for stage in doc["stages"]:
        assert page.get_by_role("status").inner_text() == f"{stage['title']}: {stage['formula']}"
        assert page.locator('#stage table[data-role="value"] td').all_inner_texts() == cells(value_of(doc, stage))
        if stage["key"] == "W1":
            assert page.locator("#stage p.formula").last.inner_text().startswith("shape 128x64, norm ")
        page.keyboard.press("ArrowRight")
    page.screenshot(path=str(_shots(tmp_path) / "digits-model.png"), full_page=True)
    assert problems == []


def test_a_2d_data_set_is_drawn_with_the_class_of_every_place_as_training_moves(browser, tmp_path):
    args = ["--data", "moons", "--layers", "2,8,2", "--activation", "tanh", "--lr", "0.05", "--index", "3", "--optimizer", "adam"]
    page, problems = opened(browser, page_of(args, tmp_path, "moons"))
    doc = json.loads(page.locator("#backprop-trace").text_content())
    drawing = page.get_by_role("img", name=f"The {len(doc['data']['points'])} points and the class the network gives each place")
    assert drawing.locator(".point").count() == len(doc["data"]["points"]) == 300
    assert doc["x"] == doc["data"]["points"][3][:2]
    slider = page.get_by_role("slider", name="Training step")
    for k in (0, len(doc["steps"]) - 1):
        slider.fill(str(k))
        shown = drawing.locator("rect[data-class]").evaluate_all("cells => cells.map(c => +c.dataset.class)")
        assert shown == doc["steps"][k]["boundary"] and len(shown) == len(doc["data"]["xs"]) ** 2
    assert doc["steps"][-1]["loss"] < doc["steps"][0]["loss"] / 2
    assert page.locator("#rule").inner_text().startswith("Each step: adam, at lr 0.05")
    page.screenshot(path=str(_shots(tmp_path) / "moons.png"), full_page=True)
    assert problems == []


def _shots(tmp_path):
    folder = Path(os.environ.get("BACKPROP_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
