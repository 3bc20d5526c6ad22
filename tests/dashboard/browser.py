"""What the Chromium tests share: the browser, a logged-in session, and the layout checks.

test_browser.py and test_flag_browser.py drive different pages through the
same checks: every page loads cleanly on desktop and phone, key columns stay
in view on a phone, and no chart label overlaps another.
"""

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a-long-browser-password"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> None:
    reason = f"no browser: {CHROMIUM} is missing (apt-get install chromium)"
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the browser tests")
    pytest.skip(reason)


class Session:
    def __init__(self, page, base_url: str):
        self.page = page
        self.base_url = base_url
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("dialog", self._dialog)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console error on {self.page.url}: {message.text}")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> None:
        self.page.goto(self.base_url + path, wait_until="networkidle")

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@contextmanager
def logged_in(base_url: str, username: str = "oncall"):
    """A Chromium page logged in as `username` (whose password is PASSWORD)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        session = Session(page, base_url)
        session.open("/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base_url + "/")
        yield session
        browser.close()


def load_every_page(session: Session, pages: dict, *, prefix: str = "") -> None:
    """Each page on desktop and phone: one heading, charts drawn, no sideways scroll
    on a phone, and a screenshot of each."""
    for viewport_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        session.page.set_viewport_size(viewport)
        for name, (path, has_charts) in pages.items():
            session.open(path)
            if has_charts:
                session.page.wait_for_selector(".main-svg", state="attached")
            assert session.page.locator("main h1").count() == 1, name
            session.shot(f"{viewport_name}-{prefix}{name}")
            if viewport_name == "phone":
                width = session.page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], f"{name} scrolls sideways on a phone ({width}px)"


def key_cells_out_of_view(session: Session) -> list[str]:
    """The key columns' cells (th.key's) that are not wholly on screen, but for folded ones."""
    return session.page.evaluate(
        """(width) => [...document.querySelectorAll("table td.key")].filter((cell) => {
             if (cell.closest("details:not([open])") || cell.closest("[hidden]")) return false;
             const box = cell.getBoundingClientRect();
             return box.width === 0 || box.left < 0 || box.right > width;
           }).map((cell) => cell.dataset.label + ": " + cell.textContent.slice(0, 40))""",
        session.page.viewport_size["width"],
    )


_LABEL_BOXES = """() => [...document.querySelectorAll(".js-plotly-plot")].map((plot) => {
  const boxes = [...plot.querySelectorAll(
    ".xtick text, .ytick text, .legendtext, .g-xtitle text, .g-ytitle text")]
    .map((node) => node.getBoundingClientRect())
    .filter((box) => box.width > 0 && box.height > 0)
    .map((box) => [box.left, box.top, box.right, box.bottom]);
  return [plot.id, boxes];
})"""


def overlaps(boxes: list, slack: float = 0.5) -> list:
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart_x = a[2] - slack <= b[0] or b[2] - slack <= a[0]
            apart_y = a[3] - slack <= b[1] or b[3] - slack <= a[1]
            if not (apart_x or apart_y):
                found.append((a, b))
    return found


def assert_no_label_overlaps(session: Session, pages: dict, *, skip=lambda name: False) -> None:
    """On desktop and phone, no label of any chart on these pages overlaps another."""
    for viewport in (DESKTOP, PHONE):
        session.page.set_viewport_size(viewport)
        for name, (path, has_charts) in pages.items():
            if not has_charts or skip(name):
                continue
            session.open(path)
            session.page.wait_for_selector(".main-svg", state="attached")
            # Folded charts (the deploy page's, on a phone) are measured unfolded.
            session.page.evaluate(
                "async () => { for (const d of document.querySelectorAll('details')) d.open = true;"
                " await Promise.all([...document.querySelectorAll('.js-plotly-plot')]"
                ".map((plot) => Plotly.Plots.resize(plot))); }"
            )
            for plot_id, boxes in session.page.evaluate(_LABEL_BOXES):
                assert boxes, (name, plot_id)
                assert overlaps(boxes) == [], (name, viewport["width"], plot_id)


def chart_trace_names(session: Session, chart_id: str) -> list[str]:
    return session.page.evaluate(
        "(id) => document.getElementById(id).data.map((trace) => trace.name)", chart_id
    )


def click_marker(session: Session, chart_id: str, trace_name: str) -> None:
    """Click the first marker of a chart's change trace (Monoenv.changeMarkers)."""
    names = chart_trace_names(session, chart_id)
    trace = session.page.locator(f"#{chart_id} .scatterlayer .trace").nth(names.index(trace_name))
    box = trace.locator(".point").first.bounding_box()
    session.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    session.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
