"""The dashboard, end to end: a real `turret-stream up` process fed with real texts
(paraphrase groups; sessions that go A -> B -> A), driven in Debian's Chromium by
Playwright. Screenshots of every view, laptop and phone, go to test-artifacts/."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from turret_stream.journey_flows import step_flows

from .test_pipeline import GROUPS
from .test_up import Up, _post

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
A, B, C = GROUPS["password"], GROUPS["card"], GROUPS["weather"]
# Sessions that go A -> B -> A (two events per stay, so every switch is clear).
JOURNEYS = {f"journey-{i}": [A[i], A[i + 1], B[i], B[i + 1], A[i + 2], A[i + 3]] for i in range(3)}

browser_only = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
)


def poll(check: Callable[[], Any], timeout: float = 90.0, what: str = "condition") -> Any:
    """Polls an HTTP answer until ``check`` returns something truthy (the stack clusters
    and labels asynchronously; there is no event to await from outside the process)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def get(url: str, path: str, key: str, **params: Any) -> tuple[int, dict]:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    request = urllib.request.Request(f"{url}{path}?{query}", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Stack:
    """The running `up` process, its key, and what was fed to it."""

    def __init__(self, up: Up, key: str, data_dir: Path) -> None:
        self.up, self.url, self.key, self.data_dir = up, up.url, key, data_dir

    def track(self, text: str, session: str, user: str = "u1", **extra: Any) -> dict:
        status, body = _post(
            self.url,
            self.key,
            {
                "name": "user_prompt",
                "metadata": {"prompt": text, **extra},
                "session_id": session,
                "user_id": user,
            },
        )
        assert status == 200, body
        return body

    def api(self, path: str, **params: Any) -> dict:
        status, body = get(self.url, path, self.key, **params)
        assert status == 200, body
        return body

    def clusters(self) -> list[dict]:
        """The topics, or none while the dimension is not typed yet (404)."""
        status, body = get(self.url, "/v1/clusters", self.key, dimension="prompt")
        return body["clusters"] if status == 200 else []

    def names_of(self, topic: str) -> set[str]:
        """Every name the topic has had (the labeller renames a topic as it grows)."""
        cluster = self.api(f"/v1/clusters/{topic}")["cluster"]
        return {cluster["label"], *(e["name"] for e in cluster["label_history"])}

    def topic_of(self, event_id: str) -> str | None:
        status, body = get(self.url, f"/v1/events/{event_id}", self.key)
        return body["event"]["dimensions"]["prompt"]["cluster_id"] if status == 200 else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    up = Up(data_dir, env={"TURRET_LABELS__INTERVAL_S": "0.5"})
    try:
        key = up.read_key()
        # The banner names the dashboard beside the API.
        assert f"  Dashboard: {up.url}/" in "\n".join(up.banner), up.banner
        up.wait_ready()
        running = Stack(up, key, data_dir)
        # Seed sessions make the three topics exist, then sessions move A -> B -> A.
        for i, text in enumerate(A + B + C):
            running.track(
                text, f"seed-{i}", user=f"seed-user-{i % 4}", platform=["ios", "web"][i % 2]
            )
        poll(lambda: len(running.clusters()) >= 3, what="three topics")
        last = None
        for session, texts in JOURNEYS.items():
            for text in texts:
                last = running.track(text, session, user="journey-user", platform="web")
        poll(lambda: running.topic_of(last["event_id"]), what="the last journey event placed")
        # The books count a session after its events are placed: wait until all three
        # journeys (A -> B -> A) are in the flows, not only the first.
        poll(
            lambda: len(running.api("/v1/sessions/journey-0/journey")["path"]) == 3,
            what="journey-0's three steps",
        )
        a, b = topics_of_journeys(running)

        def journeys_counted() -> bool:
            f = running.api("/v1/journeys/flows", steps=3)
            count = {(k["step"], k["from"], k["to"]): k["count"] for k in f["links"]}
            whole = count.get((1, a, b), 0) >= len(JOURNEYS) <= count.get((2, b, a), 0)
            return whole and all(f["labels"].values())

        poll(journeys_counted, what="every journey counted, with labelled topics")
        # The labeller names topics as they grow: start once the names hold still.
        seen: list[dict] = []

        def names_settled() -> bool:
            seen.append({t["id"]: t["label"] for t in running.clusters()})
            return len(seen) >= 4 and seen[-1] == seen[-2] == seen[-3] == seen[-4]

        poll(names_settled, what="labels that hold still")
        yield running
    finally:
        up.stop()
        up.proc.kill()


# -- the API the dashboard reads --------------------------------------------------------


def test_step_flows_counts_sessions_per_step_and_probability():
    flows = step_flows({("A", "B", "A"): 3, ("A",): 1, ("B", "C"): 2}, 2)
    nodes = {(n["step"], n["topic"]): (n["sessions"], n["ended"]) for n in flows["nodes"]}
    assert nodes == {(1, "A"): (4, 1), (1, "B"): (2, 0), (2, "B"): (3, 0), (2, "C"): (2, 2)}
    links = {
        (k["step"], k["from"], k["to"]): (k["count"], k["probability"]) for k in flows["links"]
    }
    assert links == {(1, "A", "B"): (3, 0.75), (1, "B", "C"): (2, 1.0)}
    assert flows["beyond"] == 3
    with pytest.raises(ValueError):
        step_flows({}, 0)


def topics_of_journeys(stack: Stack) -> tuple[str, str]:
    body = stack.api("/v1/sessions/journey-0/journey")
    a, b, a_again = body["path"]
    assert a == a_again and a != b
    return a, b


def test_flows_labels_and_session_messages(stack: Stack):
    a, b = topics_of_journeys(stack)
    flows = stack.api("/v1/journeys/flows", steps=3)
    links = {(k["step"], k["from"], k["to"]): k for k in flows["links"]}
    assert links[(1, a, b)]["count"] >= 3 and links[(2, b, a)]["count"] >= 3
    node = {(n["step"], n["topic"]): n for n in flows["nodes"]}
    assert links[(1, a, b)]["probability"] == round(
        links[(1, a, b)]["count"] / node[(1, a)]["sessions"], 4
    )
    # Every topic an answer names comes with its label: no request per topic.
    named = {n["topic"] for n in flows["nodes"]}
    assert set(flows["labels"]) == named and all(flows["labels"].values())
    clusters = stack.api("/v1/clusters", dimension="prompt")["clusters"]
    assert flows["labels"][a] == next(t["label"] for t in clusters if t["id"] == a)
    for path in ("/v1/journeys/paths", "/v1/journeys/transitions", "/v1/journeys/dropoffs"):
        body = stack.api(path)
        assert {a, b} <= set(body["labels"]), path
    # A session's messages in order, each with its topic and step.
    session = stack.api("/v1/sessions/journey-0/journey")
    assert [m["text"] for m in session["messages"]] == JOURNEYS["journey-0"]
    assert [m["step"] for m in session["messages"]] == [1, 1, 2, 2, 3, 3]
    assert [m["topic"] for m in session["messages"]] == [a, a, b, b, a, a]
    assert session["labels"][a] and session["labels"][b]
    user = stack.api("/v1/users/journey-user/sessions")
    assert set(user["labels"]) >= {a, b}
    # Bad parameters are refused with a code, never a 500.
    status, body = get(stack.url, "/v1/journeys/flows", stack.key, steps=0)
    assert status == 400 and body["code"] == "INVALID_REQUEST" and body["field"] == "steps"
    dims = stack.api("/v1/dimensions")["dimensions"]
    assert {"key": "prompt", "type": "text"}.items() <= next(
        d for d in dims if d["key"] == "prompt"
    ).items()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_dashboard_and_its_libraries_are_served_by_the_api(stack: Stack):
    status, headers, body = fetch(f"{stack.url}/")
    assert status == 200 and b'<script type="module" src="/dashboard/js/app.js">' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    # The libraries come from the installed wheels: plotly.js (gzipped for browsers).
    status, headers, body = fetch(
        f"{stack.url}/vendor/plotly.min.js", {"Accept-Encoding": "gzip, deflate"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert b"plotly" in gzip.decompress(body)[:2000].lower()
    status, _, body = fetch(f"{stack.url}/vendor/swagger-ui-bundle.js")
    assert status == 200 and b"SwaggerUIBundle" in body
    # Only the app's own files: no escape from its folder, no unknown vendor file.
    for path in ("/dashboard/..%2F__init__.py", "/dashboard/js/nothere.js", "/vendor/x.js"):
        status, _, body = fetch(f"{stack.url}{path}")
        assert status == 404 and json.loads(body)["code"] == "NOT_FOUND", path
    status, headers, _ = fetch(f"{stack.url}/docs")
    assert status == 200  # redirected to the dashboard's API view
    status, _, body = fetch(f"{stack.url}/dashboard/js/app.js")
    assert status == 200 and b"sessionStorage" in body


# -- in the browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    # Two shared cores: loading plotly.js or Swagger UI can take seconds.
    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


class Page:
    """A tab on the dashboard that records every request and console error."""

    def __init__(self, browser, stack: Stack, viewport: dict[str, int]) -> None:
        self.stack = stack
        self.context = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))

    def sign_in(self, key: str | None = None, hash_: str = "") -> None:
        self.page.goto(f"{self.stack.url}/{hash_}")
        self.page.fill("#signin-key", key or self.stack.key)
        self.page.click("#signin-submit")

    def go(self, hash_: str) -> None:
        self.page.evaluate("h => { location.hash = h; }", hash_)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def check_same_origin(self) -> None:
        origin = urllib.parse.urlsplit(self.stack.url)
        for url in self.requests:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme == "data":
                continue
            assert (parts.hostname, parts.port) == (origin.hostname, origin.port), url
        blocked = [e for e in self.console_errors if "Content Security Policy" in e]
        assert not blocked, blocked


@pytest.fixture
def tab(browser, stack: Stack) -> Iterator[Page]:
    page = Page(browser, stack, LAPTOP)
    yield page
    page.check_same_origin()
    page.context.close()


@pytest.mark.browser
@browser_only
def test_wrong_key_is_refused_and_an_unreachable_api_is_named(tab: Page):
    from playwright.sync_api import expect

    tab.sign_in("tsk_nothere_wrongsecret")
    expect(tab.page.locator("#signin-error")).to_contain_text("Wrong API key")
    expect(tab.page.locator("#shell")).to_be_hidden()
    tab.shot("signin-wrong-key-laptop")
    # The API going away (requests fail in the browser) is told apart from a bad key.
    tab.page.route("**/v1/**", lambda route: route.abort())
    tab.page.fill("#signin-key", tab.stack.key)
    tab.page.click("#signin-submit")
    expect(tab.page.locator("#signin-error")).to_contain_text("Cannot reach the API")
    tab.page.unroute("**/v1/**")
    tab.page.click("#signin-submit")
    expect(tab.page.locator("#project-name")).to_have_text("default")
    # The key stays in this tab's sessionStorage, never in the URL.
    assert tab.stack.key not in tab.page.url
    assert tab.page.evaluate("sessionStorage.getItem('turret.apiKey')") == tab.stack.key
    assert not any(tab.stack.key in url for url in tab.requests)


@pytest.mark.browser
@browser_only
def test_topics_are_listed_with_labels_and_a_rename_sticks(tab: Page):
    from playwright.sync_api import expect

    tab.sign_in()
    clusters = tab.stack.api("/v1/clusters", dimension="prompt")["clusters"]
    cards = tab.page.locator("#topic-list .topic")
    expect(cards).to_have_count(len(clusters))
    shown = cards.locator(".topic-label").all_inner_texts()
    assert shown == [t["label"] for t in clusters]  # largest first, each with its label
    assert all(t["label"] for t in clusters)
    expect(cards.first.locator(".examples li").first).not_to_be_empty()
    tab.shot("topics-laptop")

    # Search by meaning finds the password topic's events.
    tab.page.fill("#search", "I can't remember my password")
    tab.page.click(".search button")
    expect(tab.page.locator(".search-hits li").first).to_contain_text("password")

    a, _ = topics_of_journeys(tab.stack)
    tab.go(f"#/topics/{a}?dimension=prompt")
    expect(tab.page.locator("#topic-events tr")).not_to_have_count(0)
    tab.page.fill("#rename-input", "Password help desk")
    tab.page.click(".rename button")
    expect(tab.page.locator("#rename-status")).to_contain_text("Saved")
    expect(tab.page.locator("#topic-title")).to_have_text("Password help desk")
    tab.shot("topic-detail-laptop")
    # It sticks: a reload (same tab, still signed in) shows the new name in the list.
    tab.page.reload()
    tab.go("#/topics")
    card = tab.page.locator(f'.topic[data-topic-id="{a}"] .topic-label')
    expect(card).to_have_text("Password help desk")
    body = tab.stack.api(f"/v1/clusters/{a}")
    assert body["cluster"]["label"] == "Password help desk"
    assert body["cluster"]["label_source"] == "manual"


@pytest.mark.browser
@browser_only
def test_the_topic_list_filters_by_theme(tab: Page):
    from playwright.sync_api import expect

    tab.sign_in()
    themes = tab.stack.api("/v1/themes", dimension="prompt")["themes"]
    options = tab.page.locator("#theme-filter option")
    expect(options).to_have_count(len(themes) + 1)  # and "All themes"
    theme = themes[-1]
    tab.page.select_option("#theme-filter", theme["id"])
    wanted = tab.stack.api("/v1/clusters", dimension="prompt", theme=theme["id"])["clusters"]
    cards = tab.page.locator("#topic-list .topic")
    expect(cards).to_have_count(len(wanted))
    shown = [cards.nth(i).get_attribute("data-topic-id") for i in range(len(wanted))]
    assert shown == [t["id"] for t in wanted]
    expect(cards.first.locator(".theme")).to_contain_text(theme["label"])
    assert f"theme={theme['id']}" in tab.page.url


@pytest.mark.browser
@browser_only
def test_sankey_draws_the_journey_topics(tab: Page):
    from playwright.sync_api import expect

    tab.sign_in(hash_="#/journeys?steps=3")
    flows = tab.stack.api("/v1/journeys/flows", steps=3)
    labels = flows["labels"]
    # One node per (step, topic), plus an "ended" node per step where sessions stop.
    ends = {n["step"] for n in flows["nodes"] if n["ended"] and n["step"] < 3}
    nodes = tab.page.locator("#sankey .sankey .node-label")
    expect(nodes).to_have_count(len(flows["nodes"]) + len(ends))
    drawn = sorted(t for t in nodes.all_text_contents() if t != "ended")
    assert drawn == sorted(labels[n["topic"]] for n in flows["nodes"])
    a, b = topics_of_journeys(tab.stack)
    assert drawn.count(labels[a]) >= 2 and labels[b] in drawn  # A at steps 1 and 3
    expect(tab.page.locator("#top-paths li").first).to_be_visible()
    expect(tab.page.locator("#loops")).to_contain_text(labels[b])
    tab.shot("journeys-laptop")
    # A segment filter narrows the sessions: the journeys were all on the web.
    tab.page.fill("#segment", "platform:ios")
    tab.page.click(".filters button")
    expect(tab.page.locator("#journey-totals")).to_contain_text(re.compile(r"· 0 transitions"))
    ios = tab.stack.api("/v1/journeys/flows", steps=3, segment="platform:ios")
    assert ios["totals"]["transitions"] == 0


@pytest.mark.browser
@browser_only
def test_a_tracked_transition_shows_in_the_live_view(tab: Page):
    from playwright.sync_api import expect

    # The page's sockets go through Playwright to the real server, so a test can cut one.
    sockets = []
    tab.page.route_web_socket(
        "**/v1/live*", lambda ws: sockets.append((ws, ws.connect_to_server()))
    )
    tab.sign_in(hash_="#/live")
    expect(tab.page.locator("#live-state")).to_have_attribute("data-state", "live")
    a, b = topics_of_journeys(tab.stack)
    tab.stack.track(A[0], "live-1")
    row = tab.page.locator('#live-feed .transition[data-session="live-1"]')
    expect(row).to_have_count(1, timeout=15_000)
    # Named with the topic's label of that moment.
    assert row.locator(".chip.to").inner_text() in tab.stack.names_of(a)
    # Paused: transitions are held, and shown on resume.
    tab.page.click("#live-pause")
    tab.stack.track(B[0], "live-1")
    expect(tab.page.locator("#live-held")).to_contain_text("1 held", timeout=15_000)
    expect(row).to_have_count(1)
    tab.page.click("#live-pause")
    expect(row).to_have_count(2)
    assert row.first.locator(".chip.to").inner_text() in tab.stack.names_of(b)
    tab.shot("live-laptop")
    # The connection drops: the state says so, and the view reconnects by itself (with
    # backoff) and goes on showing transitions.
    [(page_side, _)] = sockets
    page_side.close(code=1001, reason="going away")
    expect(tab.page.locator("#live-state")).to_have_attribute("data-state", "down")
    expect(tab.page.locator("#live-state")).to_contain_text("retrying in")
    expect(tab.page.locator("#live-state")).to_have_attribute("data-state", "live")
    assert len(sockets) == 2
    tab.stack.track(A[1], "live-1")
    expect(row).to_have_count(3)


@pytest.mark.browser
@browser_only
def test_a_session_reads_in_order_with_topics_and_steps(tab: Page):
    from playwright.sync_api import expect

    tab.sign_in(hash_="#/sessions?id=journey-1")
    messages = tab.page.locator("#session-messages .message")
    expect(messages).to_have_count(6)
    assert [t.strip() for t in messages.locator(".msg-text").all_inner_texts()] == JOURNEYS[
        "journey-1"
    ]
    assert messages.locator(".step-no").all_inner_texts() == [
        "step 1",
        "step 1",
        "step 2",
        "step 2",
        "step 3",
        "step 3",
    ]
    tab.shot("sessions-laptop")
    # A user id lists the user's sessions.
    tab.page.fill("#lookup", "journey-user")
    tab.page.click(".search button")
    expect(tab.page.locator("#session-result li")).to_have_count(len(JOURNEYS))


@pytest.mark.browser
@browser_only
def test_api_reference_renders_the_openapi_document(tab: Page):
    from playwright.sync_api import expect

    tab.sign_in(hash_="#/api")
    expect(tab.page.locator("#swagger .opblock-summary-path").first).to_be_visible()
    paths = tab.page.locator("#swagger .opblock-summary-path").all_inner_texts()
    assert "/track" in [p.strip() for p in paths]
    tab.shot("api-laptop")


@pytest.mark.browser
@browser_only
def test_a_new_project_sees_the_curl_line_for_its_own_server(tab: Page):
    from playwright.sync_api import expect

    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "turret_stream",
            "keys",
            "create",
            "--project",
            "fresh",
            "--data-dir",
            str(tab.stack.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    tab.sign_in(made.stdout.strip().splitlines()[-1])
    expect(tab.page.locator("#project-name")).to_have_text("fresh")
    expect(tab.page.locator(".state.empty pre.curl")).to_contain_text(f"{tab.stack.url}/track")
    tab.shot("topics-empty-laptop")


@pytest.mark.browser
@browser_only
def test_every_view_fits_a_phone(browser, stack: Stack):
    from playwright.sync_api import expect

    phone = Page(browser, stack, PHONE)
    try:
        phone.sign_in()
        waits = {
            "topics": "#topic-list .topic",
            "journeys": "#sankey .sankey .node-label",
            "live": '#live-state[data-state="live"]',
            "sessions?id=journey-2": "#session-messages .message",
            "api": "#swagger .opblock-summary-path",
        }
        for view, ready in waits.items():
            phone.go(f"#/{view}")
            expect(phone.page.locator(ready).first).to_be_visible()
            expect(phone.page.locator("#nav")).to_be_visible()
            # Nothing wider than the screen: no sideways scrolling of the page.
            width = phone.page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (view, width)
            phone.shot(f"{view.split('?')[0]}-phone")
        phone.check_same_origin()
    finally:
        phone.context.close()
