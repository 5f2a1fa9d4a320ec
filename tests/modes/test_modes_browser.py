"""The board in a real browser (Chromium, as tests/e2e/test_browser.py drives it) on each mode's stack:
the page picks the transport the deployment offers (data-transports: WebSocket where Daphne runs, short
polling every 2 s in wsgi) and says so, messages another client posts appear once each and in order,
and a job started on the page finishes."""

from __future__ import annotations

from e2e.test_browser import (
    FIRST_LIVE_TIMEOUT_MS,
    LIVE_POLL,
    LIVE_WS,
    assert_a_job_finishes,
    assert_posts_appear_once_in_order,
    load_page,
)
from playwright.sync_api import expect

# What the page offers and the indicator it shows, by mode (the contract of issue 14).
OFFERED = {"split": "websocket longpoll poll", "asgi": "websocket longpoll poll", "wsgi": "poll"}
LIVE = {"split": LIVE_WS, "asgi": LIVE_WS, "wsgi": LIVE_POLL}


def test_page_goes_live_the_way_the_mode_offers_and_shows_posts_and_a_job(browser, target, site):
    """Tests that the page offers the mode's transports, goes live with the first (WebSocket in asgi,
    polling every 2 s in wsgi, where it opens no socket), shows two posts of another client once each
    in order, and runs a job to finished."""
    page = browser.new_context().new_page()
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    load_page(page, target.base_url + "/")
    assert page.locator("[data-transports]").first.get_attribute("data-transports") == OFFERED[target.mode]
    expect(page.locator("#connection")).to_have_text(LIVE[target.mode], timeout=FIRST_LIVE_TIMEOUT_MS)

    assert_posts_appear_once_in_order(page, site, f"{target.mode} page")
    assert_a_job_finishes(page)

    expect(page.locator("#connection")).to_have_text(LIVE[target.mode])
    assert bool(sockets) == (target.mode != "wsgi"), sockets
