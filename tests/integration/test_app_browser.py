"""`irtmon app` served for real and driven by headless Chromium (Debian's /usr/bin/chromium).

Logs in, opens a patient's timeline and images, acknowledges an alert with a note (typed,
then the button clicked, as a clinician does), and keeps screenshots under
artifacts/screenshots/ (git-ignored), each checked not to be blank.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psycopg
import pytest
from PIL import Image

from irtmon.stack.private import free_port, settings_env
from tests.conftest import REPO
from tests.integration.test_app import PASSWORD, Seeded, db, seeded  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# The first run of the app's script imports the pages and the core layer: seconds when idle, more
# than the 30 s default on a CI machine busy with other test workers (stop 30 failed there).
FIRST_RENDER_MS = 180_000


class Served(NamedTuple):
    url: str
    log: Path


@pytest.fixture(scope="module")
def served(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # noqa: F811
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "streamlit.log"
    env = settings_env(seeded.settings)
    env["IRTMON_APP_REFRESH_S"] = "5"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "irtmon.cli_app", "app", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the app did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.3)
        yield Served(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def open_sign_in(page, served: Served) -> None:
    """Open the app and wait for its sign-in form; when it never shows, fail with what the page
    and the app's log say instead of a bare timeout."""
    page.goto(served.url)
    try:
        page.get_by_label("User name").wait_for(timeout=FIRST_RENDER_MS)
    except Exception as err:  # playwright's TimeoutError: report the page and the app's log
        text = page.locator("body").inner_text(timeout=5_000)[-2000:]
        shot_path = SHOTS / "00-sign-in-never-shown.png"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot_path), full_page=True)
        raise AssertionError(
            f"no sign-in form after {FIRST_RENDER_MS / 1000:.0f} s ({err.__class__.__name__}); "
            f"screenshot {shot_path}\npage text:\n{text}\napp log:\n"
            + served.log.read_text(errors="replace")[-3000:]
        ) from err


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert pixels.std() > 8, f"{path} looks blank (pixel std {pixels.std():.1f})"
    return path


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="apt-get install chromium")
def test_browser_login_timeline_and_acknowledge(
    served: Served,
    seeded: Seeded,  # noqa: F811
    db: psycopg.Connection,  # noqa: F811 - the seeded database (test_app)
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from irtmon.seed import seed_users

    with psycopg.connect(seeded.settings.dsn, autocommit=True) as conn:
        seed_users(conn, [("app-bea", "clinician", PASSWORD, ["app-clinic"])])
    acks_before = db.execute(
        "SELECT count(*) FROM audit_log WHERE actor = 'app-bea' AND action = 'alert.acknowledged'"
    ).fetchone()[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1500})
        page.set_default_timeout(30_000)
        open_sign_in(page, served)
        page.get_by_label("User name").fill("app-bea")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        shot(page, "01-login")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Cohort").wait_for()
        page.wait_for_timeout(1500)
        shot(page, "02-cohort")

        page.get_by_role("link", name="Patient timeline").click()
        page.get_by_role("heading", name="Patient timeline").wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        page.wait_for_timeout(1500)
        assert "psn-" in page.url  # the pseudonym, and nothing else, in the URL
        shot(page, "03-timeline")

        page.get_by_role("link", name="Images").click()
        page.get_by_role("heading", name="Images").wait_for()
        page.locator("[data-testid='stImage']").first.wait_for()
        page.wait_for_timeout(1000)
        shot(page, "04-images")

        page.get_by_role("link", name="Alerts inbox").click()
        page.get_by_role("heading", name="Alerts inbox").wait_for()
        # exact: a role name matches by substring, and the "acknowledged" status filter
        # above the alerts is a button too
        acknowledge = page.get_by_role("button", name="Acknowledge", exact=True).first
        acknowledge.wait_for()
        shot(page, "05-alerts")
        page.get_by_label("Note").first.fill("reviewed in clinic")
        acknowledge.click()
        page.get_by_text("acknowledged by app-bea.").first.wait_for()
        page.wait_for_timeout(500)
        shot(page, "06-alert-acknowledged")

        page.get_by_role("link", name="Models").click()
        page.get_by_role("heading", name="Models").wait_for()
        page.wait_for_timeout(1000)
        shot(page, "07-models")
        browser.close()
    db.rollback()
    acks_after = db.execute(
        "SELECT count(*) FROM audit_log WHERE actor = 'app-bea' AND action = 'alert.acknowledged'"
    ).fetchone()[0]
    assert acks_after == acks_before + 1
    # the note typed before the mouse click went with it
    last_note = db.execute(
        "SELECT detail->>'note' FROM audit_log WHERE actor = 'app-bea' AND action = "
        "'alert.acknowledged' ORDER BY id DESC LIMIT 1"
    ).fetchone()[0]
    assert last_note == "reviewed in clinic"
    assert shutil.disk_usage(SHOTS).free > 0


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="apt-get install chromium")
def test_browser_five_lesion_patient(
    served: Served,
    seeded: Seeded,  # noqa: F811
    db: psycopg.Connection,  # noqa: F811 - the seeded database (test_app)
) -> None:
    """A story-v2 patient with five lesions at baseline and new ones: the timeline (one curve
    per lesion, sums in and out of the field, RECIST 1.1 and iRECIST per scan, the lesion
    table) and the images (every lesion outlined with its tracking id), as screenshots."""
    sync_api = pytest.importorskip("playwright.sync_api")
    psn, n = db.execute(
        "SELECT patient, count(DISTINCT tracking_uid) FROM lesion_measurements "
        "WHERE patient = ANY(%s) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
        (seeded.lesions.patients,),
    ).fetchone()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1700})
        page.set_default_timeout(30_000)
        open_sign_in(page, served)
        page.get_by_label("User name").fill("app-lena")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Cohort").wait_for()
        page.get_by_role("link", name="Patient timeline").click()
        page.get_by_role("heading", name="Patient timeline").wait_for()
        # Pick the patient by filtering the list, as a clinician types a pseudonym: open it,
        # fill the picker's own input (fill focuses it first; keys typed before the input had
        # the focus were lost, CI 2026-12-02) and click the one option left. Clicking without
        # filtering failed too (CI, 2026-12-02). A pick that finds no option in 5 s is tried
        # again, up to 5 times. Not the 5 s refresh: an open list stayed open for 16 s through
        # three refreshes (probe on a served app, 2026-12-02); the cause on CI is not known.
        picker = page.locator("[data-testid='stSelectbox']").first
        for attempt in range(5):
            try:
                picker.click()
                picker.locator("input").fill(psn)
                page.get_by_role("option", name=psn, exact=True).click(timeout=5_000)
                break
            except sync_api.TimeoutError:
                page.keyboard.press("Escape")
                if attempt == 4:
                    raise
        page.wait_for_url(f"**patient={psn}*")
        page.get_by_text("Lesions per scan").wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        page.wait_for_timeout(2500)
        assert psn in page.url
        body = page.locator("body").inner_text()
        assert "Out-of-field sum" in body and "RECIST 1.1 · iRECIST" in body
        shot(page, "08-lesions-timeline")

        page.get_by_role("link", name="Images").click()
        page.get_by_role("heading", name="Images").wait_for()
        page.locator("[data-testid='stImage']").first.wait_for()
        page.wait_for_timeout(1500)
        assert "lesions outlined" in page.locator("body").inner_text()
        shot(page, "09-lesions-images")
        browser.close()
    assert n >= 6
