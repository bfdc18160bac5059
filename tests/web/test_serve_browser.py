"""The draw-a-digit page in a real headless Chromium (Debian's ``chromium``), driven by Playwright.

The test draws a 0, a 1 and a 7 with ``page.mouse`` on ``#pad`` for each model, then reads the
predicted digit, the probability bars and the input as the model saw it (the ``#seen`` canvas),
and checks them against the API's answer for the very PNG the page holds. It also checks the page
at 360 px wide and with the keyboard, and writes a screenshot (``NNSCRATCH_SCREENSHOT=PATH``
writes it there too: that is how docs/images/serve.png was made).

Chromium comes from apt (``.ci/run`` installs it when missing); ``playwright install`` is never
used. ``NNSCRATCH_NO_BROWSER=1`` skips these tests where no Chromium can be installed.
"""

from __future__ import annotations

import base64
import math
import os
import shutil

import httpx
import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# strokes in the unit square of the pad (x right, y down)
DIGITS = {
    0: [[(0.5 + 0.22 * math.sin(2 * math.pi * t / 24), 0.5 - 0.33 * math.cos(2 * math.pi * t / 24))
         for t in range(25)]],
    # a 1 with a small flag, drawn with a thick pen (below): the 8x8 format keeps a digit's aspect
    # ratio, and the dataset's 1s are 2-3 of its columns wide; a thin bar is one column, which
    # the MLP reads as a 3 (even fully trained) and the CNN as a 1
    1: [[(0.42, 0.28), (0.52, 0.17), (0.52, 0.83)]],
    7: [[(0.25, 0.2), (0.75, 0.2), (0.42, 0.85)]],
}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if os.environ.get("NNSCRATCH_NO_BROWSER") == "1":
        pytest.skip("NNSCRATCH_NO_BROWSER=1")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no {CHROMIUM}: apt-get install -y chromium (.ci/run does it)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:   # a fresh profile (--user-data-dir) each run
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1000, "height": 1000})
        yield context
        context.close()


@pytest.fixture
def page(browser, server):
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    outside: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    pg.goto(server.url + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    yield pg
    pg.close()
    assert not outside, f"the page asked for something elsewhere: {outside}"
    assert not [e for e in errors if "400" not in e], errors


def settle(page) -> None:
    page.wait_for_function("window.nnscratch.requested > 0 && "
                           "window.nnscratch.answered === window.nnscratch.requested", timeout=20_000)


def draw(page, digit: int) -> None:
    page.locator("#width").fill(str(PEN[digit]))   # the stroke width slider
    box = page.locator("#pad").bounding_box()
    for stroke in DIGITS[digit]:
        x0, y0 = stroke[0]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=6)
        page.mouse.up()
    settle(page)


def read_page(page) -> dict:
    return page.evaluate("""() => {
        const seen = document.getElementById('seen');
        const px = seen.getContext('2d').getImageData(0, 0, seen.width, seen.height).data;
        const grey = [];
        for (let y = 0; y < seen.height; y++) {
            const row = [];
            for (let x = 0; x < seen.width; x++) row.push(px[4 * (y * seen.width + x)]);
            grey.push(row);
        }
        return {digit: document.getElementById('digit').textContent,
                bars: [...document.querySelectorAll('#bars li')].map(li => Number(li.dataset.p)),
                seen: grey, answer: window.nnscratch.last,
                png: document.getElementById('pad').toDataURL('image/png'),
                maps: document.querySelectorAll('#features canvas').length};
    }""")


PEN = {0: 26, 1: 44, 7: 26}   # stroke width (#width, 8..48) for each digit

DRAWN: dict[str, dict[int, int]] = {}   # model -> drawn digit -> predicted digit (for the report)


@pytest.mark.parametrize("model", ["digits-mlp", "digits-cnn"])
def test_drawn_digits_are_predicted_and_the_input_is_shown(page, server, model, tmp_path):
    page.select_option("#model", model)
    results = {}
    for digit in DIGITS:
        page.click("#clear")
        settle(page)
        assert page.text_content("#digit") == "–"
        draw(page, digit)
        shown = read_page(page)
        answer = shown["answer"]
        # the page shows the API's answer for the very PNG it holds
        png = shown["png"].split(",", 1)[1]
        direct = httpx.post(server.url + "/api/predict",
                            json={"model": model, "image": png, "feature_maps": model == "digits-cnn"}).json()
        assert answer == direct
        assert shown["digit"] == str(answer["digit"])
        assert shown["bars"] == pytest.approx(answer["probabilities"], abs=1e-12)
        # the input as the model saw it: 8x8 grey pixels, 255 * input
        np.testing.assert_array_equal(np.array(shown["seen"]),
                                      np.round(255 * np.array(answer["input"])))
        assert np.array(answer["input"]).shape == (8, 8) and np.array(answer["input"]).max() >= 0.5
        assert shown["maps"] == (32 if model == "digits-cnn" else 0)
        results[digit] = answer["digit"]
        (tmp_path / f"{model}-{digit}.png").write_bytes(base64.b64decode(png))
    DRAWN[model] = results
    print(f"\n{model}: drawn -> predicted {results}")
    assert results == {0: 0, 1: 1, 7: 7}


def test_undo_and_model_switch(page):
    draw(page, 1)
    assert page.text_content("#digit") == "1"
    page.click("#undo")
    settle(page)
    assert page.text_content("#digit") == "–"
    draw(page, 7)
    page.select_option("#model", "digits-cnn")
    settle(page)
    assert read_page(page)["answer"]["model"] == "digits-cnn"
    assert "test accuracy" in page.text_content("#accuracy")
    assert page.locator("#confusion td").count() == 100


def test_keyboard_and_360px(browser, server):
    page = browser.new_page()
    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360   # no sideways scrolling
    box = page.locator("#pad").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["width"] >= 200
    assert page.evaluate("getComputedStyle(document.getElementById('pad')).touchAction") == "none"
    for id_ in ("clear", "undo"):
        assert page.get_attribute(f"#{id_}", "aria-label")
    assert page.locator("label[for='model']").count() == 1 and page.locator("label[for='width']").count() == 1
    draw(page, 1)
    assert page.text_content("#digit") == "1"
    # Tab to the Clear button, then Enter
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "clear":
            break
    assert page.evaluate("document.activeElement.id") == "clear"
    page.keyboard.press("Enter")
    settle(page)
    assert page.text_content("#digit") == "–"
    page.screenshot(path=str(server.log.parent / "serve-360.png"), full_page=True)
    page.close()


def test_screenshot(page, tmp_path):
    page.select_option("#model", "digits-cnn")
    draw(page, 7)
    out = tmp_path / "serve.png"
    page.screenshot(path=str(out), full_page=True)
    from PIL import Image

    with Image.open(out) as img:
        assert img.size[0] == 1000 and img.size[1] > 600
        assert len(np.unique(np.asarray(img.convert("L")))) > 20   # not a blank page
    if os.environ.get("NNSCRATCH_SCREENSHOT"):
        shutil.copy(out, os.environ["NNSCRATCH_SCREENSHOT"])
