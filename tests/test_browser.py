"""The web page in a real browser: Debian's Chromium, driven by Playwright (no browser download),
against real uvicorn servers on 127.0.0.1 serving a tiny model trained here and the tiny photo
model of the ``photo_run`` fixture."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from apparel.kinds.fashion_mnist.data import CLASS_NAMES
from apparel.inference.prediction import Predictor
from apparel.serve.app import create_app
from conftest import PHOTO_CLASSES, render_photo
from playwright import sync_api  # a dev dependency: missing is a broken install, not a skip
from serving import garment_photo, running_server, train_tiny_model

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root in a container: no sandbox, no GPU, and nothing that reaches the network.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--disable-extensions", "--disable-sync",
    "--no-first-run", "--no-default-browser-check", "--metrics-recording-only", "--mute-audio",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: `make setup` installs Debian's chromium")


@pytest.fixture(scope="module")
def base_url(tiny_dataset, tmp_path_factory):
    model_dir = train_tiny_model(tiny_dataset, tmp_path_factory.mktemp("browser_model"))
    with running_server(create_app(Predictor.from_dir(model_dir))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, url):
    """A new page at ``url`` and the list its JavaScript errors go to."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page, errors


@pytest.fixture(scope="module")
def page(browser, base_url):
    page, errors = open_page(browser, base_url + "/")
    yield page
    assert errors == [], f"JavaScript errors on the page: {errors}"
    page.context.close()


@pytest.fixture(scope="module")
def photo_page(browser, photo_run):
    with running_server(create_app(Predictor.from_dir(photo_run))) as url:
        page, errors = open_page(browser, url + "/")
        yield page
        assert errors == [], f"JavaScript errors on the page: {errors}"
        page.context.close()


def card_results(page, count):
    """Wait until ``count`` cards are finished, then return (name, label) of each, newest first."""
    page.wait_for_function(
        "n => document.querySelectorAll('.card').length >= n && "
        "[...document.querySelectorAll('.card .label')].every(e => e.textContent !== 'classifying…')",
        arg=count, timeout=20_000)
    return page.eval_on_selector_all(".card", "cards => cards.map(c => [c.querySelector('.name').textContent, "
                                     "c.querySelector('.label').textContent])")


def test_uploading_a_photo_shows_its_label_input_and_top_3(page, base_url, tmp_path):
    photo = tmp_path / "red-dress.jpg"
    photo.write_bytes(garment_photo())
    page.set_input_files("#files", str(photo))
    (name, label), = card_results(page, 1)
    assert name == "red-dress.jpg" and label in CLASS_NAMES
    card = page.locator(".card").first
    assert card.locator(".top li").count() == 3
    assert card.locator(".input").get_attribute("src").startswith("data:image/png;base64,")
    assert card.locator(".photo").evaluate("img => img.complete && img.naturalWidth") == 240
    assert card.locator(".input").evaluate("img => img.complete && img.naturalWidth") == 28
    assert card.locator(".input-caption").text_content() == "model input 28×28"
    assert page.locator("#classes").text_content() == "10 classes: " + ", ".join(CLASS_NAMES)
    # The tiny model's Clothing sits near the 0.5 threshold: the card says what the API chose, either way.
    answer = page.request.post(f"{base_url}/predict", multipart={
        "files": {"name": photo.name, "mimeType": "image/jpeg", "buffer": photo.read_bytes()}})
    category = answer.json()["predictions"][0]["category"]
    said = f"Category: {category['path']}" if category["path"] else f"No category: {category['reason']}"
    assert card.locator(".category").text_content() == f"{said} ({100 * category['confidence']:.1f}%)"
    assert category["path"] is None or category["path"].startswith("Apparel & Accessories > ")
    assert "Model seed-mlp" in page.locator("#model").text_content()
    page.screenshot(path=str(tmp_path / "page.png"))


def test_dropping_photos_and_a_bad_file(page):
    page.reload()
    page.evaluate("""async ([photo]) => {
        const bytes = Uint8Array.from(atob(photo), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
        transfer.items.add(new File(["not an image"], "notes.txt", { type: "text/plain" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
    }""", [base64.b64encode(garment_photo(colour=(30, 30, 160))).decode()])
    results = dict(card_results(page, 2))
    assert results["dropped.jpg"] in CLASS_NAMES
    assert results["notes.txt"].startswith("Error: 'notes.txt': not a readable image")
    assert page.locator(".card.failed").count() == 1
    # The refused file is not counted as classified (10 of which 6 were refused said "Classified 10").
    page.wait_for_function("() => !document.getElementById('status').textContent.startsWith('Classifying')")
    assert page.locator("#status").text_content() == "Classified 1 photo. 1 photo refused: each says why."


def test_the_page_follows_a_photo_model(photo_page, tmp_path):
    photo = tmp_path / "blue-dress.jpg"
    render_photo(0, np.random.default_rng(5)).save(photo, quality=90)
    photo_page.set_input_files("#files", str(photo))
    (name, label), = card_results(photo_page, 1)
    assert name == "blue-dress.jpg" and label in PHOTO_CLASSES
    card = photo_page.locator(".card").first
    assert card.locator(".top li").count() == 3
    assert card.locator(".input").evaluate("img => img.complete && img.naturalWidth") == 32  # the RGB input
    assert card.locator(".input-caption").text_content() == "model input 32×32 RGB"
    assert photo_page.locator("#classes").text_content() == "3 classes: dress, shoes, t-shirt"
    assert "validation accuracy 50.0%" in photo_page.locator("#model").text_content()
    assert "RGB photo" in photo_page.locator("#preprocessing").text_content()


def test_the_page_shows_a_photo_s_colour(photo_page, tmp_path):
    from test_photos import garment_photo as plain_garment

    photo = tmp_path / "navy-dress.png"
    plain_garment(size=(300, 400), box=(60, 60, 240, 340), colour=(30, 40, 82)).save(photo)
    before = photo_page.locator(".card").count()
    photo_page.set_input_files("#files", str(photo))
    card_results(photo_page, before + 1)
    card = photo_page.locator(".card").first
    assert card.locator(".name").text_content() == "navy-dress.png"
    assert card.locator(".colour").text_content().startswith("Colour: Navy (")


def test_the_page_shows_the_sleeve_length_the_classes_tell(browser, sleeve_run, tmp_path):
    from conftest import answering
    from test_photos import garment_photo as plain_garment

    photo = tmp_path / "navy-tee.png"
    plain_garment(size=(300, 400), box=(60, 60, 240, 340), colour=(30, 40, 82)).save(photo)
    with running_server(create_app(answering(sleeve_run, [0.05, 0.05, 0.9]))) as url:  # surely a T-shirt
        page, errors = open_page(browser, url + "/")
        page.set_input_files("#files", str(photo))
        card_results(page, 1)
        card = page.locator(".card").first
        assert card.locator(".sleeve").text_content() == "Sleeve length: Short (90.0%)"
        assert errors == [], f"JavaScript errors on the page: {errors}"
        page.context.close()


def test_a_server_with_an_api_key_lets_the_page_in_after_the_login_form(browser, tiny_dataset, tmp_path):
    """With --api-key the page answered 401 and sent no key; now a login form takes the key
    once, and its session cookie opens the page and its uploads (#31.12)."""
    model_dir = train_tiny_model(tiny_dataset, tmp_path / "model")
    with running_server(create_app(Predictor.from_dir(model_dir), api_key="s3cret-key")) as url:
        page, errors = open_page(browser, url + "/")
        assert page.locator("form[action='/login'] input[name='key']").count() == 1
        assert page.locator("#files").count() == 0
        page.fill("input[name='key']", "wrong-key")
        with page.expect_navigation():
            page.click("button[type='submit']")
        assert page.locator("#login-error").text_content() == "wrong API key"
        assert page.context.cookies() == []
        page.fill("input[name='key']", "s3cret-key")
        with page.expect_navigation():
            page.click("button[type='submit']")
        assert page.url == url + "/" and page.locator("#files").count() == 1
        (cookie,) = page.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "s3cret" not in cookie["value"]
        photo = tmp_path / "red-dress.jpg"
        photo.write_bytes(garment_photo())
        page.set_input_files("#files", str(photo))
        (name, label), = card_results(page, 1)
        assert name == "red-dress.jpg" and label in CLASS_NAMES
        assert "Model seed-mlp" in page.locator("#model").text_content()  # the metadata, too
        assert errors == [], f"JavaScript errors on the page: {errors}"
        page.context.close()
