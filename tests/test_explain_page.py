"""`zoo explain`'s page in a real headless browser: Debian's Chromium driven by its chromedriver through selenium,
the page opened from disk with the network off. One browser for the module.

Screenshots are kept in artifacts/explain/ (gitignored; the path is printed). Without Chromium the tests skip,
unless ZOO_REQUIRE_BROWSER=1 (as `make test` sets, after installing it) makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo import explanation

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "explain"
CHROMIUM = os.environ.get("ZOO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ZOO_CHROMEDRIVER", "/usr/bin/chromedriver")


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and not shutil.which(path):
            return f"{path} is missing (apt-get install chromium chromium-driver; `make test` does)"
    return None


@pytest.fixture(scope="module")
def browser():
    missing = _browser_missing()
    if missing:
        if os.environ.get("ZOO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser tests cannot run: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of zoo explain's page: {ARTIFACTS}")
    try:
        yield driver
    finally:
        driver.quit()


def _text() -> str:
    """Real prose with quotes, parentheses and newlines (CPython's pydoc topics), and one character no model knows."""
    from pydoc_data.topics import topics

    prose = "\n\n".join(topics[k] for k in sorted(topics))[:1500]
    return prose[:700] + "\u2603" + prose[700:]


@pytest.fixture(scope="module")
def page(tmp_path_factory, browser):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_OFFLINE", "1")
        mp.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        path = tmp_path_factory.mktemp("page") / "explain.html"
        result = explanation.explain("char-rnn", _text(), out=path, top_k=5)
    return path, result


def _open(driver, path: Path) -> None:
    driver.get(path.as_uri())
    driver.find_element("css selector", "body[data-ready='1']")  # the script ran to its end


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _hover(driver, index: int) -> None:
    from selenium.webdriver import ActionChains

    span = driver.find_element("css selector", f"span.ch[data-i='{index}']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", span)
    ActionChains(driver).move_to_element(span).perform()


def test_the_page_renders_every_character_offline_without_errors(browser, page):
    path, result = page
    _open(browser, path)
    assert _errors(browser) == []
    spans = browser.find_elements("css selector", "#text span.ch[data-i]")
    assert len(spans) == len(result.text)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0  # nothing fetched
    assert browser.find_element("css selector", "span.ch[data-i='700']").get_attribute("class").split() == ["ch", "unk"]
    assert "char-rnn" in browser.find_element("id", "title").text
    assert f"{result.mean_loss:.3f} nats/char" in browser.find_element("id", "mean-loss").text
    assert "not in the model's vocabulary" in browser.find_element("id", "note").text
    browser.save_screenshot(str(ARTIFACTS / "surprise.png"))


def test_hovering_a_character_shows_its_top_k_with_the_python_probabilities(browser, page):
    path, result = page
    _open(browser, path)
    for i in (20, 333, 1200):
        _hover(browser, i)
        items = browser.find_elements("css selector", "#topk li[data-p]")
        assert [li.get_attribute("data-p") for li in items] == [f"{p:.3f}" for p in result.top_p[i]]
        assert [li.get_attribute("data-char") for li in items] == [result.vocab[c] for c in result.top_ids[i]]
        assert browser.find_element("id", "rank").text == str(result.rank[i])
        assert browser.find_element("id", "nll").text == f"{result.nll[i]:.3f}"
    _hover(browser, 3)  # within the first window: context only
    assert browser.find_elements("css selector", "#topk li[data-p]") == []
    browser.save_screenshot(str(ARTIFACTS / "hover.png"))
    assert _errors(browser) == []


def test_choosing_a_unit_recolours_the_text_by_its_activations(browser, page):
    from selenium.webdriver.support.ui import Select

    path, result = page
    _open(browser, path)
    unit = int(np.argmax(np.abs(result.correlations["vowel (not consonant)"])))
    Select(browser.find_element("css selector", "select#unit")).select_by_value(result.units[unit])
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('#text span.ch'), s => [s.dataset.v ?? null, getComputedStyle(s).backgroundColor])"
    )
    values = result.states[:, unit]
    has = ~np.isnan(values)
    assert [v is not None for v, _ in shown] == has.tolist()
    page_values = np.array([float(v) for v, _ in shown if v is not None])
    np.testing.assert_allclose(page_values, values[has], atol=1 / 127 + 1e-3)  # a byte per value
    hi, lo = int(np.nanargmax(values)), int(np.nanargmin(values))
    red, blue = (tuple(map(int, re.findall(r"\d+", shown[i][1])[:3])) for i in (hi, lo))
    assert red[0] > red[2] and blue[2] > blue[0]  # positive red, negative blue
    browser.save_screenshot(str(ARTIFACTS / "unit.png"))
    assert _errors(browser) == []


def test_a_feature_button_picks_its_unit_and_the_keyboard_moves_the_selection(browser, page):
    from selenium.webdriver.common.keys import Keys

    path, result = page
    _open(browser, path)
    button = browser.find_element("css selector", "#units button[data-unit]")
    button.click()
    assert browser.find_element("css selector", "select#unit").get_attribute("value") == button.get_attribute("data-unit")
    text = browser.find_element("id", "text")
    browser.execute_script("arguments[0].focus()", text)
    text.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    assert browser.find_element("css selector", "span.ch.sel").get_attribute("data-i") == "2"
    text.send_keys(Keys.END)
    assert browser.find_element("css selector", "span.ch.sel").get_attribute("data-i") == str(len(result.text) - 1)


def test_the_page_fits_a_narrow_screen(browser, page):
    path, _ = page
    browser.set_window_size(390, 844)
    try:
        _open(browser, path)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        browser.save_screenshot(str(ARTIFACTS / "narrow.png"))
    finally:
        browser.set_window_size(1280, 900)


def test_a_model_without_states_shows_its_predictions_and_the_note(browser, tmp_path, page):
    _, result = page
    result = explanation.Explanation(
        result.model, result.params, result.data, result.text, result.vocab, result.known, result.nll, result.rank,
        result.top_ids, result.top_p, notes=["char-rnn has no hidden states to show"],
    )  # fmt: skip
    path = explanation.write_page(result, tmp_path / "no-states.html")
    _open(browser, path)
    assert _errors(browser) == []
    assert browser.find_element("css selector", "select#unit").get_attribute("disabled") == "true"
    assert "no hidden states" in browser.find_element("id", "note").text
    _hover(browser, 400)
    assert len(browser.find_elements("css selector", "#topk li[data-p]")) == 5


def test_compare_html_shows_the_leaderboard_and_each_models_surprise_side_by_side(browser, tmp_path, small_corpus):
    from zoo import compare, published, registry

    out = tmp_path / "cmp"
    entries = []
    for k, name in enumerate(("char-rnn", "char-seq")):  # the bundled runs stand for trained ones
        shutil.copytree(published.bundled_path(registry.published_entry(name)), out / name)
        entries.append(compare.Entry(name, 102215, 4.0, None, None, 1.5 + k, (1.5 + k) / 0.693, None, []))
    settings = compare.Settings(1.0, str(small_corpus), "cpu", True, 0.2)
    compare.write_page(entries, out, settings, registry.get_model("char-rnn"))
    browser.get((out / compare.PAGE).as_uri())
    assert _errors(browser) == []
    rows = browser.find_elements("css selector", "#leaderboard tbody tr")
    assert [r.find_elements("css selector", "td")[1].text for r in rows] == ["char-rnn", "char-seq"]
    text = compare.sample_text(registry.get_model("char-rnn"), settings)
    for name in ("char-rnn", "char-seq"):
        expected = explanation.compute(zoo.load(out / name), text, top_k=1, with_states=False)
        shown = browser.execute_script(
            f"return Array.from(document.querySelectorAll('.model[data-model=\"{name}\"] span.ch'), s => s.dataset.nll ?? null)"
        )
        assert len(shown) == len(text)
        assert shown == [None if np.isnan(v) else f"{v:.3f}" for v in expected.nll]
    browser.save_screenshot(str(ARTIFACTS / "compare.png"))
