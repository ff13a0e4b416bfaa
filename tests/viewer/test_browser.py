"""The viewer in a real browser (Debian Chromium driven by Playwright): upload a phantom, see the planes,
generate a report with the shipped model, read it from the page, jump to the evidence, save a screenshot;
synthesize a volume from text in the Synthesize tab and download its NIfTI."""

import os
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_TO = os.environ.get("CTVL_VIEWER_SCREENSHOT")  # also save the screenshot here (for the README)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-extensions",
]
IMAGES_READY = """planes => planes.every(p => {
    const img = document.querySelector(`#ctvl-${p} img`);
    return img && img.complete && img.naturalWidth > 0;
})"""

CHANGED = (
    "([p, old]) => { const i = document.querySelector(`#ctvl-${p} img`); return i && i.src !== old && i.complete; }"
)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_selector("#ctvl-upload")
    return page


@pytest.fixture(scope="module")
def page(browser, viewer):
    page = _open(browser, viewer.local_url)
    yield page
    page.close()


def _src(page, plane):
    return page.locator(f"#ctvl-{plane} img").get_attribute("src")


def test_upload_phantom_shows_header_and_three_planes(page, phantom_nifti, tmp_path):
    page.locator("#ctvl-upload input[type=file]").set_input_files(str(phantom_nifti))
    header = page.locator("#ctvl-header")
    header.get_by_text("64 × 64 × 33").wait_for()
    assert "phantom_0.nii.gz" in header.inner_text() and "LPS" in header.inner_text()
    assert "6 × 6 × 11.25" in header.inner_text()
    planes = ["axial", "coronal", "sagittal"]
    page.wait_for_function(IMAGES_READY, arg=planes)
    sizes = {p: page.eval_on_selector(f"#ctvl-{p} img", "i => [i.naturalWidth, i.naturalHeight]") for p in planes}
    # 64 x 6 mm = 384 mm on 512 px; 33 x 11.25 mm = 371.25 mm → 495 px
    assert sizes == {"axial": [512, 512], "coronal": [512, 495], "sagittal": [512, 495]}

    assert page.locator("#ctvl-axial-slice input[type=number]").input_value() == "16"  # opens mid-volume
    before = _src(page, "axial")
    page.locator("#ctvl-axial-slice input[type=range]").fill("5")  # move the axial slider
    page.wait_for_function(CHANGED, arg=["axial", before])
    before = _src(page, "axial")
    page.locator("#ctvl-preset").get_by_label("lung").check()  # lung window re-renders every plane
    page.wait_for_function(CHANGED, arg=["axial", before])
    assert page.locator("#ctvl-level input[type=number]").input_value() == "-600"
    assert page.locator("#ctvl-width input[type=number]").input_value() == "1500"

    page.click("#ctvl-generate")  # the shipped report model writes a report
    page.wait_for_function(
        "() => document.querySelector('#ctvl-report textarea').value.startsWith('Findings:')", timeout=120_000
    )
    text = page.locator("#ctvl-report textarea").input_value()
    assert "Impression:" in text
    findings = page.locator("#ctvl-findings")
    findings.get_by_text("Pleural effusion").wait_for()
    assert findings.inner_text().count("yes") + findings.inner_text().count("no") >= 18
    positives = "yes" in findings.inner_text().split()
    if positives:  # jump to the slice where the model's evidence for the first positive finding is strongest
        evidence = page.locator("#ctvl-evidence")
        evidence.wait_for(state="visible")
        assert "occlusion of latent positions" in evidence.inner_text()
        page.locator("#ctvl-axial-slice input[type=range]").fill("0")
        page.wait_for_timeout(300)
        before = _src(page, "axial")
        evidence.locator("input").click()
        page.locator("ul[role=listbox] li").first.click()
        page.wait_for_function(CHANGED, arg=["axial", before])
        assert page.locator("#ctvl-axial-slice input[type=number]").input_value() != "0"

    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
    if SCREENSHOT_TO:
        page.screenshot(path=SCREENSHOT_TO, full_page=True)


def test_without_a_model_generate_explains_itself(browser, bare_viewer, phantom_nifti):
    page = _open(browser, bare_viewer.local_url)
    page.locator("#ctvl-upload input[type=file]").set_input_files(str(phantom_nifti))
    page.locator("#ctvl-header").get_by_text("64 × 64 × 33").wait_for()
    page.click("#ctvl-generate")  # no made-up report: a readable message
    page.get_by_text("No report model bundle is installed").first.wait_for()
    assert page.locator("#ctvl-report textarea").input_value() == ""
    page.close()


def test_unreadable_upload_is_explained_in_the_page(page, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a CT scan")
    page.locator("#ctvl-upload input[type=file]").set_input_files(str(bad))
    page.locator("#ctvl-header").get_by_text("Could not read the upload").wait_for()
    assert "notes.txt: unsupported file type" in page.locator("#ctvl-header").inner_text()
    deadline = time.time() + 5
    while time.time() < deadline and page.locator("#ctvl-axial img").count():
        time.sleep(0.1)
    assert page.locator("#ctvl-axial img").count() == 0  # the previous scan's planes are gone


@pytest.fixture(scope="module")
def synth_viewer(tiny_bundle):
    """The viewer with a Synthesize tab over a tiny random generator and a stand-in classifier."""
    from ctvl.viewer.server import serve, stop
    from ctvl.viewer.synthesize import Synthesizer
    from tests.viewer.conftest import free_port
    from tests.viewer.test_synthesize import stand_in_classifier

    synthesizer = Synthesizer(bundle=tiny_bundle, classify=stand_in_classifier)
    demo = serve(None, port=free_port(), block=False, quiet=True, meteor=False, synthesizer=synthesizer)
    yield demo
    stop(demo)


def test_synthesize_tab_shows_the_volume_labels_and_download(browser, synth_viewer, tmp_path):
    page = _open(browser, synth_viewer.local_url)
    page.get_by_role("tab", name="Synthesize").click()
    page.locator("#ctvl-synth-prompt textarea").fill("moderate right pleural effusion, cardiomegaly")
    page.locator("#ctvl-synth-steps input").fill("0")  # a bad setting: a message in the page, nothing generated
    page.click("#ctvl-synthesize")
    page.get_by_text("steps must be a whole number from 1 to 100, got 0").first.wait_for()
    assert page.locator("#ctvl-synth-axial img").count() == 0

    assert page.locator("#ctvl-synth-guidance input").input_value() == ""  # blank: the generator's default
    page.locator("#ctvl-synth-seed input").fill("4")
    page.locator("#ctvl-synth-steps input").fill("2")
    page.locator("#ctvl-synth-depth input").fill("20")
    page.click("#ctvl-synthesize")
    planes = ["synth-axial", "synth-coronal", "synth-sagittal"]
    page.wait_for_function(IMAGES_READY, arg=planes, timeout=120_000)
    sizes = {p: page.eval_on_selector(f"#ctvl-{p} img", "i => [i.naturalWidth, i.naturalHeight]") for p in planes}
    # 32 x 12 mm = 384 mm on 512 px; 25 x 22.5 mm = 562.5 mm is the longest extent → 512 px
    assert sizes == {"synth-axial": [350, 350], "synth-coronal": [350, 512], "synth-sagittal": [350, 512]}
    summary = page.locator("#ctvl-synth-summary")
    summary.get_by_text("seed 4, 2 steps, guidance 3, depth 25").wait_for()
    assert "depth 20 is not 1 + 8k slices; generating 25 slices instead" in summary.inner_text()
    assert page.locator("#ctvl-synth-axial-slice input[type=number]").input_value() == "12"  # opens mid-volume

    labels = page.locator("#ctvl-synth-labels")
    labels.get_by_text("Pleural effusion").wait_for()
    row = [
        c.strip() for c in labels.locator("[role=row]", has_text="Cardiomegaly").inner_text().split("\n") if c.strip()
    ]
    assert (
        row[:2] == ["Cardiomegaly", "yes"] and row[2] in ("yes", "no") and 0 <= float(row[3]) <= 1
    )  # prompt, classifier
    assert labels.locator("[role=row]").count() == 19  # header + 18 labels

    before = _src(page, "synth-axial")
    page.locator("#ctvl-synth-preset").get_by_label("lung").check()  # the same window presets
    page.wait_for_function(CHANGED, arg=["synth-axial", before])
    assert page.locator("#ctvl-synth-level input[type=number]").input_value() == "-600"

    assert page.locator('#ctvl-synth-download a[download="ctvl_synthetic_seed4.json"]').count() == 1  # the recipe
    link = page.locator('#ctvl-synth-download a[download="ctvl_synthetic_seed4.nii.gz"]')
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "download.nii.gz"
    download.value.save_as(str(saved))
    from ctvl.io import read_volume

    assert read_volume(saved).shape == (32, 32, 25)
    page.screenshot(path=str(tmp_path / "synthesize.png"), full_page=True)
    page.close()
