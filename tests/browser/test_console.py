"""The web console at /ui/ in a real headless Chromium, against real sim and edge processes."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.harness import axe_violations, dump, login, open_page, wait_until
from tests.conftest import KEYS, Stack, edge_args, edge_env, wait_for
from tests.procs import start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A wrong key answers 401 and Chromium logs the failed load: expected on the login test only.
_FAILED_LOAD = "Failed to load resource: the server responded with a status of 401"


@pytest.fixture(scope="module")
def stack(logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Three clients of two objects, one-second buckets and an anomaly in most 12 s slots."""
    data_dir = tmp_path_factory.mktemp("console-edge")
    sim_args = ["sim", "--seed", "5", "--interval", "1", "--anomaly-rate", "0.9", "--anomaly-slot", "12"]
    with start_iotedge(sim_args, log_dir=logs_dir) as sim_proc:
        started = time.time()
        with start_iotedge(edge_args(sim_proc.url, data_dir), log_dir=logs_dir, env=edge_env()) as edge_proc:
            result = Stack(sim=sim_proc, edge=edge_proc, data_dir=data_dir, started_at=started)
            wait_for(lambda: result.get("/readyz").status_code == 200, 20, "edge ready")
            yield result


def _rows(page: Any, selector: str, attribute: str) -> list[str]:
    return list(page.eval_on_selector_all(selector, f"rows => rows.map(r => r.getAttribute('{attribute}'))"))


def _show(page: Any, route: str) -> None:
    """Go to ``route`` (a hash such as ``#/status``) and wait for the view's first refresh to finish."""
    page.evaluate("route => { window.location.hash = route; }", route)
    wait_until(
        lambda: page.evaluate(
            "route => { const v = document.getElementById('view');"
            " return v.dataset.route === route && Number(v.dataset.refreshes ?? 0) > 0; }",
            route,
        ),
        30,
        f"{route} refreshed once",
    )


def _refreshes(page: Any) -> int:
    return int(page.get_attribute("#view", "data-refreshes") or 0)


def _wait_refreshes(page: Any, more: int) -> None:
    """Wait for the current view to finish ``more`` live refreshes from now."""
    target = _refreshes(page) + more
    wait_until(lambda: _refreshes(page) >= target, 30, f"{more} more refreshes")


# Keys that survive the live re-rendering of rows (ids, link targets, window names).
_NAME = "e => e.id || e.getAttribute('href') || e.dataset.window || e.textContent"
_CONTROLS = f"""() => [...document.querySelectorAll('a[href], button, select, input')]
  .filter(e => e.offsetParent !== null && !e.disabled).map({_NAME})"""
_FOCUSED = f"(() => {{ const e = document.activeElement; return e ? ({_NAME})(e) : ''; }})()"


def test_client_key_sees_only_its_client(stack: Stack, browser: Any) -> None:
    """client_1's key shows client_1's objects with values and freshness, and none of client_2's."""
    watched = open_page(browser)
    page = watched.page
    weights: list[int] = []
    page.on("response", lambda r: weights.append(len(r.body())) if "/ui/" in r.url else None)
    login(watched, stack.edge.url, KEYS["client_1"])
    page.wait_for_selector("#fleet-results tbody tr")
    assert 0 < sum(weights) < 300 * 1024, f"page weight {sum(weights)} bytes"
    mine = stack.get("/objects", client="client_1").json()["objects"]
    expected = {o["id"] for o in mine}
    expected_types = {o["id"]: o["type"] for o in mine}
    others = {o["id"] for o in stack.get("/objects", client="client_2").json()["objects"]}
    shown = set(_rows(page, "#fleet-results tbody tr", "data-object"))
    assert shown == expected
    assert not shown & others
    assert set(_rows(page, "#fleet-results tbody tr", "data-client")) == {"client_1"}
    assert page.inner_text("#who") == "client client_1"
    # A collector cycle that times out on a loaded machine marks everything stale until the next one.
    wait_until(
        lambda: page.locator("[data-freshness=fresh]").count() == len(expected), 15, "every object fresh"
    )
    assert page.evaluate("sessionStorage.getItem('iotedge.key')") == KEYS["client_1"]
    assert KEYS["client_1"] not in page.url
    assert page.context.cookies() == []
    page.select_option("#filter-state", "stale")
    wait_until(lambda: page.locator("#fleet-results tbody tr").count() == 0, 15, "the stale filter")
    page.select_option("#filter-state", "")
    page.select_option("#filter-type", "temperature_sensor")
    wait_until(
        lambda: (
            set(_rows(page, "#fleet-results tbody tr", "data-object"))
            == {o for o, kind in expected_types.items() if kind == "temperature_sensor"}
        ),
        15,
        "the type filter",
    )
    assert watched.problems() == []
    page.context.close()


def test_status_is_scoped_and_the_console_has_its_own_csp(stack: Stack) -> None:
    """GET /status hides the pending backlog from client keys; /ui/ allows only its own files."""
    client = stack.get("/status", client="client_1").json()
    cloud = stack.get("/status", client="*").json()
    assert client["scope"] == "client_1" and client["notifications"]["pending"] is None
    assert cloud["scope"] == "*" and isinstance(cloud["notifications"]["pending"], int)
    assert {t["name"] for t in cloud["thresholds"]} >= {"temperature_high", "battery_level_low"}
    assert httpx.get(stack.edge.url + "/status").status_code == 401
    page = httpx.get(stack.edge.url + "/ui/", headers={"accept-language": "fr-CA,fr;q=0.9,en;q=0.5"})
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    assert '<html lang="fr">' in page.text
    asset = httpx.get(stack.edge.url + "/ui/static/js/app.js")
    assert asset.status_code == 200 and asset.headers["content-security-policy"] == csp
    assert "script-src" not in stack.get("/objects").headers["content-security-policy"]


def test_wrong_key_shows_the_error(stack: Stack, browser: Any) -> None:
    """A wrong key gets a clear message, no data, and is not kept."""
    watched = open_page(browser, ignore=(_FAILED_LOAD,))
    login(watched, stack.edge.url, "not-a-real-key-0000000000")
    page = watched.page
    wait_until(lambda: bool(page.inner_text("#login-error")), 10, "the login error")
    assert "refused" in page.inner_text("#login-error")
    assert page.locator("#fleet-results").count() == 0
    assert page.evaluate("sessionStorage.getItem('iotedge.key')") is None
    assert watched.problems() == []
    page.context.close()


def test_each_chart_draws_the_points_the_series_returned(stack: Stack, browser: Any) -> None:
    """Every metric's chart holds exactly as many points as its /readings answer had."""
    watched = open_page(browser)
    page = watched.page
    returned: dict[str, int] = {}

    def on_response(response: Any) -> None:
        if "/readings?" in response.url and response.status == 200:
            body = response.json()
            returned[body["metric"]] = len(body["points"])

    page.on("response", on_response)
    login(watched, stack.edge.url, KEYS["client_1"])
    page.wait_for_selector("#fleet-results tbody tr")
    page.click("#fleet-results tbody tr a >> nth=0")
    page.wait_for_selector(".chart canvas")
    page.click("button[data-window='15m']")

    def drawn() -> dict[str, int]:
        items = page.eval_on_selector_all(".chart", "cs => cs.map(c => [c.dataset.metric, c.dataset.points])")
        return {metric: int(points) for metric, points in items}

    wait_until(
        lambda: bool(returned) and drawn() == returned and min(returned.values()) > 0, 15, "charts drawn"
    )
    assert len(drawn()) == 2
    assert page.locator(".stats [data-stat=count]").count() == 2
    assert watched.problems() == []
    page.context.close()


def test_new_anomaly_appears_without_reload(stack: Stack, browser: Any) -> None:
    """An anomaly the edge records shows up in the open anomalies page by the page's second refresh after."""
    watched = open_page(browser)
    page = watched.page
    login(watched, stack.edge.url, KEYS["*"])
    page.wait_for_selector("#fleet-results tbody tr")
    page.click("nav a[data-view=anomalies]")
    wait_until(lambda: page.get_attribute("#view", "data-route") == "#/anomalies", 10, "the anomalies view")
    # Every state: an event can open and close between two refreshes on a slow machine.
    page.select_option("#filter-state", "all")
    page.evaluate("window.__sameDocument = true")
    known = {str(e["event_id"]) for e in stack.get("/anomalies", client="*", limit=10000).json()["anomalies"]}

    def new_event() -> str | None:
        events = stack.get("/anomalies", client="*", limit=10000).json()["anomalies"]
        fresh = [str(e["event_id"]) for e in events if str(e["event_id"]) not in known]
        return fresh[0] if fresh else None

    wait_until(lambda: new_event() is not None, 60, "the edge to open a new anomaly")
    event_id = new_event()
    # The refresh that finishes next may have asked before the edge had the event; the one
    # after it started later, so it must show the event, however slow the machine is.
    _wait_refreshes(page, 2)
    row = page.locator(f"#anomaly-results tr[data-event='{event_id}']")
    assert row.count() == 1, f"event {event_id} not shown after two refreshes"
    assert page.evaluate("window.__sameDocument === true")
    assert "at=" in (row.locator("a").get_attribute("href") or "")
    assert watched.problems() == []
    page.context.close()


def test_french_and_english_render(stack: Stack, browser: Any) -> None:
    """Accept-Language picks French; the switch goes to English; both render the fleet."""
    watched = open_page(browser, locale="fr-FR")
    page = watched.page
    page.goto(stack.edge.url + "/ui/")
    assert page.get_attribute("html", "lang") == "fr"
    assert page.inner_text("#login-title").startswith("Connexion avec votre clé")
    page.fill("#key-input", KEYS["client_1"])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#fleet-results tbody tr")
    assert page.inner_text("#view h1") == "Parc"
    wait_until(
        lambda: set(page.locator("[data-freshness=fresh]").all_inner_texts()) == {"à jour"},
        15,
        "fresh in French",
    )
    page.select_option("#lang-switch", "en")
    wait_until(lambda: page.inner_text("#view h1") == "Fleet", 10, "the English fleet")
    page.wait_for_selector("#fleet-results tbody tr")
    assert page.inner_text("nav a[data-view=status]") == "Edge status"
    assert page.get_attribute("html", "lang") == "en"
    assert watched.problems() == []
    page.context.close()


_LOCALISED = """async () => {
  const m = await import("/ui/static/js/i18n.js");
  const at = (day, hour) => Date.UTC(2026, 11, day, hour, 20) / 1000;
  return [m.axisTimes([at(1, 19)], 3600), m.axisTimes([at(1, 23) - 1200, at(2, 11)], 7 * 86400),
          [0, 1, 2].map((n) => m.tCount("points", n))];
}"""


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("fr-FR", [["20:20"], ["2 déc.", "12:20"], ["0 point", "1 point", "2 points"]]),
        ("en-GB", [["20:20"], ["2 Dec", "12:20"], ["0 points", "1 point", "2 points"]]),
    ],
)
def test_chart_times_and_counts_follow_the_language(
    stack: Stack, browser: Any, locale: str, expected: Any
) -> None:
    """Chart time axes in the page's language and clock (uPlot alone writes "8:20pm"); "1 point"."""
    context = browser.new_context(locale=locale, timezone_id="Europe/Paris")
    page = context.new_page()
    page.goto(stack.edge.url + "/ui/")
    assert page.evaluate(_LOCALISED) == expected
    context.close()


def _unreached_by_tab(page: Any) -> list[str]:
    """Controls that pressing Tab from the top of the page never focuses, one full round at most.

    A control that went away during the walk (a row past the list's limit) is not counted.
    """
    controls = set(page.evaluate(_CONTROLS))
    page.evaluate("document.activeElement && document.activeElement.blur()")
    reached: set[str] = set()
    for _ in range(len(controls) * 2 + 5):
        page.keyboard.press("Tab")
        reached.add(page.evaluate(_FOCUSED))
        if reached >= controls:
            break
    return sorted((controls & set(page.evaluate(_CONTROLS))) - reached)


def test_every_view_is_clean_accessible_and_keyboard_reachable(stack: Stack, browser: Any) -> None:
    """In each view: no console error, no CSP violation, no serious axe finding, Tab reaches every control."""
    watched = open_page(browser)
    page = watched.page
    login(watched, stack.edge.url, KEYS["*"])
    page.wait_for_selector("#fleet-results tbody tr")
    views = [
        ("#/fleet", "#fleet-results tbody tr"),
        ("#/object/device_1", ".chart canvas"),
        ("#/anomalies", "#anomaly-results table, #anomaly-results p"),
        ("#/status", "#status-cards .card"),
    ]
    for route, ready in views:
        _show(page, route)
        page.wait_for_selector(ready)
        assert axe_violations(page) == [], f"{route}: {dump(axe_violations(page))}"
        unreached = _unreached_by_tab(page)
        assert unreached == [], f"{route}: Tab never reached {unreached}"
    assert watched.problems() == []
    page.context.close()


def test_focus_survives_live_refreshes(stack: Stack, browser: Any) -> None:
    """A focused row link in the anomalies and fleet views stays focused across several live refreshes."""
    watched = open_page(browser)
    page = watched.page
    login(watched, stack.edge.url, KEYS["*"])
    page.wait_for_selector("#fleet-results tbody tr")
    for route, link in [("#/anomalies", "#anomaly-results tbody a"), ("#/fleet", "#fleet-results tbody a")]:
        _show(page, route)
        # The stack's simulator opens its first anomalies within a few 12 s slots.
        page.wait_for_selector(link, timeout=90_000)
        page.focus(f"{link} >> nth=-1")
        href = page.evaluate("document.activeElement.getAttribute('href')")
        _wait_refreshes(page, 3)
        focused = page.evaluate(_FOCUSED)
        assert focused == href, f"{route}: focus went from {href} to {focused!r}"
    assert watched.problems() == []
    page.context.close()


_PATCH_CASES = """async () => {
  const { el, patch } = await import('./static/js/dom.js');
  const box = el('div');
  document.body.append(box);
  const item = (k) => el('li', { 'data-key': k }, el('a', { href: '#' + k }, k));
  const list = (keys) => el('ul', {}, keys.map(item));
  patch(box, list([...'abcd']));
  const ul = box.firstChild;
  const c = box.querySelector('[href="#c"]');
  c.focus();
  const seen = [];
  const watch = new MutationObserver(() => {});
  for (const keys of ['abcd', 'xabcd', 'xacd', 'dcax', 'ad'].map((k) => [...k])) {
    watch.observe(box, { subtree: true, childList: true, attributes: true, characterData: true });
    patch(box, list(keys));
    seen.push({
      keys: [...box.querySelectorAll('li')].map((li) => li.dataset.key),
      mutations: watch.takeRecords().length,
      same_list: box.firstChild === ul,
      focused: document.activeElement === c,
    });
    watch.disconnect();
  }
  return seen;
}"""


def test_patch_keeps_nodes_and_focus(stack: Stack, browser: Any) -> None:
    """dom.js patch(): same content changes nothing; inserts, removals and moves keep the focus."""
    watched = open_page(browser)
    page = watched.page
    page.goto(stack.edge.url + "/ui/")
    seen = page.evaluate(_PATCH_CASES)
    assert [s["keys"] for s in seen] == [list("abcd"), list("xabcd"), list("xacd"), list("dcax"), list("ad")]
    assert seen[0]["mutations"] == 0
    assert all(s["same_list"] for s in seen)
    assert [s["focused"] for s in seen] == [True, True, True, True, False]
    assert watched.problems() == []
    page.context.close()


def test_rate_limited_login_says_so(stack: Stack, browser: Any, logs_dir: Path, tmp_path: Path) -> None:
    """Once the per-address cap on failed logins is spent, the form shows the 429 as such."""
    env = {**edge_env(), "IOTEDGE_AUTH_FAILURES": "2"}
    with start_iotedge(edge_args(stack.sim.url, tmp_path), log_dir=logs_dir, env=env) as edge:
        watched = open_page(browser, ignore=("Failed to load resource",))
        page = watched.page
        page.goto(edge.url + "/ui/")
        messages = []
        for _ in range(3):
            page.fill("#key-input", "wrong-key-000000000000")
            page.evaluate("document.getElementById('login-error').textContent = ''")
            page.click("#login-form button[type=submit]")
            wait_until(lambda: bool(page.inner_text("#login-error")), 10, "a login message")
            messages.append(page.inner_text("#login-error"))
        assert "refused" in messages[0]
        assert "429" in messages[-1] and "Too many requests" in messages[-1]
        assert watched.problems() == []
        page.context.close()


def test_hostile_object_id_in_the_url_is_only_text(stack: Stack, browser: Any) -> None:
    """An object id with markup in the URL is shown as text, never parsed, and answered 'not found'."""
    watched = open_page(browser, ignore=("status of 404",))
    page = watched.page
    login(watched, stack.edge.url, KEYS["client_1"])
    page.wait_for_selector("#fleet-results tbody tr")
    hostile = '<img src=x onerror="window.__pwned=1">'
    page.evaluate("id => { window.location.hash = '#/object/' + encodeURIComponent(id); }", hostile)
    page.wait_for_selector("#view .error")
    assert page.inner_text("#view h1").endswith(hostile)
    assert page.locator("#view img").count() == 0
    assert page.evaluate("window.__pwned === undefined")
    assert watched.problems() == []
    page.context.close()


def test_stopping_the_simulator_turns_freshness_stale(stack: Stack, browser: Any) -> None:
    """Device API gone: values stay, marked stale; then edge gone: still shown, with a banner (runs last)."""
    watched = open_page(browser, ignore=("net::ERR_CONNECTION_REFUSED",))
    page = watched.page
    login(watched, stack.edge.url, KEYS["client_1"])
    page.wait_for_selector("[data-freshness=fresh]")
    stack.sim.stop()
    wait_until(
        lambda: (
            page.locator("[data-freshness=fresh]").count() == 0
            and page.locator("[data-freshness=stale]").count() > 0
        ),
        15,
        "stale markers",
    )
    assert "battery_level" in page.inner_text("#fleet-results tbody tr td.value >> nth=0")
    assert page.is_visible("#banner")
    assert httpx.get(stack.edge.url + "/healthz").status_code == 200
    shown = page.locator("#fleet-results tbody tr").count()
    stack.edge.stop()
    wait_until(lambda: "does not answer" in page.inner_text("#banner"), 15, "the edge-down banner")
    assert page.locator("#fleet-results tbody tr").count() == shown
    assert page.locator("[data-freshness=fresh]").count() == 0
    assert watched.problems() == []
    page.context.close()
