"""A real browser (Debian's Chromium, headless, driven by Playwright) on the board: two pages see
each other's messages live, and a job's progress bar fills; without WebSocket the page falls back to
long polling, and to short polling where that is all the deployment offers (issue 14).

Over HTTPS the browser trusts the local CA (.tls/ca.pem) the way a user's Chromium would: the CA is in
the NSS database of its home directory (certutil, Debian's libnss3-tools), and Chromium checks the
site's certificate against it, host name and all. No certificate error is ignored."""

import os
import re
import shutil
import subprocess
import uuid

import pytest
from harness.tls import ca_file
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Milliseconds a page may take to show what the other did.
LIVE_TIMEOUT_MS = 15_000
# Milliseconds a page just loaded may take to go live: board.js gives a socket 15 s to reach ready
# (READY_TIMEOUT_MS) and then tries again, so a first handshake lost on the way (seen once under load:
# it never reached Nginx) is the second attempt's to make good, as it would be for a user.
FIRST_LIVE_TIMEOUT_MS = 35_000
# The indicator (#connection) of a page that is live, per transport (board.js LABELS).
LIVE_WS = "live (WebSocket)"
LIVE_LONGPOLL = "live (long polling)"
LIVE_POLL = "live (polling every 2 s)"


@pytest.fixture(scope="session")
def browser_home(tmp_path_factory):
    """A home directory for Chromium whose NSS database (~/.pki/nssdb) trusts the local CA for TLS
    servers ("C,,"); Chromium on Linux reads its trust store from there."""
    if shutil.which("certutil") is None:
        pytest.fail("certutil is not installed (apt-get install libnss3-tools)")
    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for command in (
        ["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"],
        ["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "channels-stack local CA", "-t", "C,,", "-i", ca_file()],
    ):
        subprocess.run(command, check=True, capture_output=True, text=True)
    return home


@pytest.fixture
def browser(browser_home, monkeypatch):
    # Playwright's driver (Node.js) makes route.fetch()'s requests itself: it trusts the local CA too.
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", ca_file())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            env={**os.environ, "HOME": str(browser_home)},
        )
        yield browser
        browser.close()


def load_page(page, url: str):
    """page.goto(url) (its Response), loaded again when Chromium dropped the load with
    net::ERR_NETWORK_CHANGED, at most three tries: Chromium does that when the host's network
    interfaces change (a container of another stack starting beside the tests), which says nothing
    about the site. Any other error is raised at once."""
    for attempt in range(3):
        try:
            return page.goto(url, timeout=LIVE_TIMEOUT_MS)
        except PlaywrightError as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def open_board(browser, target):
    """A board page in its own browser context (its own cookies, like a second user), live over WebSocket."""
    page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    load_page(page, target.base_url + "/")
    expect(page.locator("#connection")).to_have_text(LIVE_WS, timeout=FIRST_LIVE_TIMEOUT_MS)
    return page


def test_page_is_served_over_https_and_http2_and_its_sockets_over_wss(browser, target):
    """Tests that Chromium, trusting the local CA, loads the board over HTTPS and HTTP/2 from a
    certificate the CA issued, and that the page's live socket is wss:// (an HTTP/1.1 connection:
    Nginx 1.22 has no WebSocket over HTTP/2) and comes up live."""
    if not target.tls:
        pytest.skip("the target serves plain HTTP (nginx_tls off)")
    page = browser.new_context().new_page()
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    response = load_page(page, target.base_url + "/")
    assert response.ok and page.url.startswith("https://")
    details = response.security_details()
    assert details["protocol"] in {"TLS 1.2", "TLS 1.3"}, details
    assert details["issuer"].startswith("channels-stack local CA"), details
    assert page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
    expect(page.locator("#connection")).to_have_text(LIVE_WS, timeout=FIRST_LIVE_TIMEOUT_MS)
    assert sockets and all(url.startswith("wss://") for url in sockets), sockets


def test_two_pages_see_each_others_messages_and_a_job_progress_bar_fills(browser, target, artifacts_dir):
    """Tests that a message typed in one page appears in another without reload, and a job's bar fills."""
    writer = open_board(browser, target)
    reader = open_board(browser, target)
    text = f"hello from the browser test {uuid.uuid4().hex[:8]}"

    writer.fill("#text", text)
    writer.click("#post-form button[type=submit]")

    expect(reader.locator("#messages li .text").filter(has_text=text)).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(writer.locator("#messages li .text").filter(has_text=text)).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(writer.locator("#text")).to_have_value("")

    writer.fill("#steps", "5")
    writer.click("#start-job")
    job = writer.locator("#jobs li").first
    expect(job).to_contain_text(re.compile(r"finished \(5/5\)"), timeout=LIVE_TIMEOUT_MS)
    bar = job.locator("progress")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("5", "5")

    writer.screenshot(path=str(artifacts_dir / f"browser-{target.name}-writer.png"), full_page=True)
    reader.screenshot(path=str(artifacts_dir / f"browser-{target.name}-reader.png"), full_page=True)


def test_page_that_lost_its_socket_shows_every_message_posted_meanwhile_once_in_order(
    browser, target, site, supervisor
):
    """Tests that the page reconnects after Daphne is gone a while and backfills: every id once, ascending."""
    page = open_board(browser, target)
    tag = uuid.uuid4().hex[:8]
    supervisor.stop("daphne:*")
    expect(page.locator("#connection")).to_have_text(re.compile("reconnecting"), timeout=LIVE_TIMEOUT_MS)
    posted = [site.post_message(f"posted while away {n} {tag}")["id"] for n in range(5)]
    supervisor.start("daphne:*")
    # The client's backoff may be several seconds into a wait when Daphne comes back.
    expect(page.locator("#connection")).to_have_text(LIVE_WS, timeout=3 * LIVE_TIMEOUT_MS)
    expect(page.locator("#messages li .text").filter(has_text=tag)).to_have_count(5, timeout=LIVE_TIMEOUT_MS)
    live = site.post_message(f"posted after the reconnect {tag}")["id"]
    expect(page.locator(f'#messages li[data-id="{live}"]')).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    shown = page.locator("#messages li").evaluate_all("items => items.map(item => Number(item.dataset.id))")
    assert shown == sorted(set(shown)), "ids shown out of order or twice"
    assert set(posted) | {live} <= set(shown)


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 800)], ids=["phone-390", "desktop-1280"])
def test_board_fits_the_screen_at_phone_and_desktop_width_with_a_500_character_word(
    browser, target, artifacts_dir, width, height
):
    """Tests that after posting one 500-character word the page does not scroll sideways and the post
    form and the jobs column lie within the window, at 390 px and at 1280 px."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    load_page(page, target.base_url + "/")
    expect(page.locator("#connection")).to_have_text(LIVE_WS, timeout=FIRST_LIVE_TIMEOUT_MS)
    word = ("unbroken" + uuid.uuid4().hex) * 20
    word = word[:500]

    page.fill("#text", word)
    page.click("#post-form button[type=submit]")
    shown = page.locator("#messages li .text").filter(has_text=word)
    expect(shown).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    shown.scroll_into_view_if_needed()

    layout = page.evaluate(
        """() => {
          const box = (selector) => {
            const rect = document.querySelector(selector).getBoundingClientRect();
            return {left: rect.left, right: rect.right, height: rect.height};
          };
          return {
            scrollWidth: document.documentElement.scrollWidth,
            innerWidth: window.innerWidth,
            form: box("#post-form"),
            jobs: box("section.jobs"),
          };
        }"""
    )
    layout["message"] = shown.evaluate(
        "el => { const rect = el.closest('li').getBoundingClientRect(); "
        "return {left: rect.left, right: rect.right, height: rect.height}; }"
    )
    page.screenshot(path=str(artifacts_dir / f"browser-{target.name}-{width}px.png"), full_page=True)
    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    for part in ("form", "jobs", "message"):
        assert 0 <= layout[part]["left"] < layout[part]["right"] <= layout["innerWidth"], (part, layout)
    # The word wrapped onto several lines rather than being cut off or scrolled.
    assert layout["message"]["height"] > 3 * 16, layout


def fail_websocket_handshakes(page) -> None:
    """Make every WebSocket of the page close with 1006 (abnormal closure) before it opens, which is
    what a page behind a proxy that strips Upgrade sees. Playwright's route_web_socket answers the
    page's handshakes itself and closes them; the page's code runs as in any browser. (DevTools'
    request blocking, Network.setBlockedURLs, would fail the handshake in Chromium's network stack,
    but it does not apply to WebSockets: tried, the page went live over WebSocket. An init script
    deleting window.WebSocket would test only browsers that have none.)"""
    page.route_web_socket(re.compile(r"/ws/"), lambda socket: socket.close(code=1006))


def offer_only_short_polling(page, target) -> None:
    """Serve the page with data-transports="poll", what deploy mode wsgi renders (the rest of the page
    as the server sent it)."""

    def rewrite(route):
        response = route.fetch()
        body = response.text()
        assert 'data-transports="websocket longpoll poll"' in body, "the page does not offer all three"
        route.fulfill(
            response=response, body=body.replace('data-transports="websocket longpoll poll"', 'data-transports="poll"')
        )

    page.route(target.base_url + "/", rewrite)


def shown_ids(page) -> list[int]:
    return page.locator("#messages li").evaluate_all("items => items.map(item => Number(item.dataset.id))")


def assert_posts_appear_once_in_order(page, site, label: str) -> None:
    """Two messages posted by another client appear on the page once each, after what it showed, in order."""
    tag = uuid.uuid4().hex[:8]
    posted = [site.post_message(f"{label} {n} {tag}")["id"] for n in range(2)]
    expect(page.locator("#messages li .text").filter(has_text=tag)).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    shown = shown_ids(page)
    assert shown == sorted(set(shown)), "ids shown out of order or twice"
    assert shown[-2:] == posted


def assert_a_job_finishes(page) -> None:
    page.fill("#steps", "5")
    page.click("#start-job")
    job = page.locator("#jobs li").first
    expect(job).to_contain_text(re.compile(r"finished \(5/5\)"), timeout=LIVE_TIMEOUT_MS)


def test_page_whose_websockets_fail_falls_back_to_long_polling_and_shows_each_message_once(browser, target, site):
    """Tests that a page whose WebSocket handshakes fail says it is live by long polling, shows two
    messages another client posts once each and in order, and polls a job until it is finished."""
    page = browser.new_context().new_page()
    fail_websocket_handshakes(page)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    load_page(page, target.base_url + "/")
    expect(page.locator("#connection")).to_have_text(LIVE_LONGPOLL, timeout=LIVE_TIMEOUT_MS)

    assert_posts_appear_once_in_order(page, site, "long polled")
    assert_a_job_finishes(page)

    expect(page.locator("#connection")).to_have_text(LIVE_LONGPOLL)
    paths = [url.removeprefix(target.base_url) for url in requests]
    assert any(path.startswith("/api/messages/wait?after=") for path in paths), paths
    assert any(re.fullmatch(r"/api/jobs/[0-9]+", path) for path in paths), paths


def test_page_offered_only_short_polling_polls_every_2_s_and_opens_no_websocket(browser, target, site):
    """Tests that a page whose deployment offers only `poll` (deploy mode wsgi) opens no WebSocket, says
    it polls every 2 s, shows two messages another client posts once each and in order, and polls a
    job until it is finished."""
    page = browser.new_context().new_page()
    offer_only_short_polling(page, target)
    sockets, requests = [], []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.on("request", lambda request: requests.append(request.url))
    load_page(page, target.base_url + "/")
    expect(page.locator("#connection")).to_have_text(LIVE_POLL, timeout=LIVE_TIMEOUT_MS)

    assert_posts_appear_once_in_order(page, site, "short polled")
    assert_a_job_finishes(page)

    assert sockets == []
    paths = [url.removeprefix(target.base_url) for url in requests]
    assert any(path.startswith("/api/messages?after=") for path in paths), paths
    assert not any(path.startswith("/api/messages/wait") for path in paths), paths
