"""A person's journey through the workbench in headless Chromium (Selenium with Debian's chromium and
chromium-driver), as named checks: search and its explained bars, keyboard use, a comparison with moves and
overlap, an arm the public API cannot serve, ratings saved to the judgments file, a purchase that moves a product in
the next search, error pages, the browser console, and a phone-wide window.

The integration test (tests/integration/test_workbench.py) and `make workbench-check` (workbench/check.py) run it
against a real service; a check that fails records why and the journey goes on.
"""

from __future__ import annotations

import base64
import csv
import json
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from core.judgments import load_judgments

QUERY = "headphones"
# In the demo catalog one purchase moves a product the anonymous order ranks 8th for "headphones" to the top of the
# buyer's next search (a single click moves little and not always up, so the journey asserts the purchase's move).
PURCHASED_POSITION = 8
PHONE = (390, 844)
WAIT_S = 30.0
# Chrome logs a page answered with an error status as a failed resource; the error pages are meant to answer so.
ERROR_STATUS_LOG = "the server responded with a status of"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""


def chrome(size: tuple[int, int] = (1280, 900)) -> webdriver.Chrome:
    """Headless Chromium (the system's chromium and chromedriver, nothing downloaded), keeping the console's log."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        raise RuntimeError("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={size[0]},{size[1]}", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


class Journey:
    """The journey against the workbench at `url`; `down_url` is a workbench whose service is down (optional)."""

    def __init__(self, url: str, judgments_file: Path, screenshots: Path | None = None, down_url: str = "") -> None:
        self.url = url.rstrip("/")
        self.judgments_file = judgments_file
        self.screenshots = screenshots
        self.down_url = down_url.rstrip("/")
        self.checks: list[Check] = []
        self.pages = 0
        self.console: list[str] = []  # SEVERE console entries, with the page they came from
        self.moved: tuple[str, int, int] | None = None  # (product, position before, position after the purchase)
        self.driver: webdriver.Chrome | None = None

    # -- running -------------------------------------------------------------------------------------------------
    def run(self) -> list[Check]:
        """Every step in order; returns the checks."""
        self.driver = chrome()
        try:
            for step in (self.search, self.keyboard, self.compare, self.unservable_arm, self.judge, self.feedback,
                         self.errors, self.phone):
                try:
                    step()
                except Exception as error:  # noqa: BLE001 - a broken step is a failed check, the journey goes on
                    self.check(f"{step.__name__}: ran to its end", False, f"{type(error).__name__}: {error}"[:500])
                self._drain_console(step.__name__)
            self.check("browser console: no SEVERE entries", not self.console, "; ".join(self.console)[:1500])
        finally:
            self.driver.quit()
        return self.checks

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    # -- steps ---------------------------------------------------------------------------------------------------
    def search(self) -> None:
        """Type a query, submit with Enter, see explained bars and model versions; open one product's parts."""
        self.open("/")
        box = self.driver.find_element(By.ID, "q")
        box.send_keys(QUERY, Keys.ENTER)
        self.pages += 1
        items = self.wait_items()
        self.check("search: results listed", len(items) >= 5, f"{len(items)} results")
        bars = [len(item.find_elements(By.CSS_SELECTOR, ".bar .seg")) for item in items]
        self.check("search: every result has a stacked bar of its score's parts", all(count >= 2 for count in bars),
                   f"segments per bar {bars}")
        versions = self.text(".versions")
        self.check("search: model versions shown", all(name in versions for name in ("bi_encoder", "reranker")),
                   versions)
        summary = items[0].find_element(By.CSS_SELECTOR, ".parts summary")
        summary.send_keys(Keys.ENTER)
        rows = items[0].find_elements(By.CSS_SELECTOR, ".parts tbody tr")
        visible = [row for row in rows if row.is_displayed()]
        self.check("search: a product's score parts open by keyboard, with raw, rank and contribution",
                   len(visible) >= 5 and "bm25" in items[0].find_element(By.CSS_SELECTOR, ".parts").text,
                   f"{len(visible)} parts visible")
        self.shot("search")

    def keyboard(self) -> None:
        """Tab reaches the query box with a visible focus ring; every control is a labelled native control."""
        self.open("/?" + urlencode({"q": QUERY}))
        self.wait_items()
        self.driver.execute_script("document.activeElement && document.activeElement.blur();")
        reached, outlines = False, []
        for _ in range(12):
            ActionChains(self.driver).send_keys(Keys.TAB).perform()
            active = self.driver.switch_to.active_element
            outlines.append(self.driver.execute_script(
                "const s = getComputedStyle(arguments[0]); return s.outlineStyle + ' ' + s.outlineWidth;", active))
            if active.get_attribute("id") == "q":
                reached = True
                break
        self.check("keyboard: Tab reaches the query box", reached, f"{len(outlines)} tabs")
        self.check("keyboard: focus is visible", bool(outlines) and all(not o.startswith("none") for o in outlines),
                   ", ".join(outlines))
        unlabelled = self.driver.execute_script("""
            return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
              .map((el) => el.name || el.id);""")
        self.check("keyboard: every field has a label", not unlabelled, f"unlabelled: {unlabelled}")
        fake = self.driver.execute_script("""
            return [...document.querySelectorAll('[onclick], [data-feedback], [data-new-shopper]')]
              .filter((el) => el.tagName !== 'BUTTON').map((el) => el.outerHTML.slice(0, 80));""")
        self.check("keyboard: actions are real buttons", not fake, f"{fake}")

    def compare(self) -> None:
        """Fill the compare form, see both rankings with moves and their overlap."""
        self.open("/compare?" + urlencode({"q": QUERY}))
        for name, arm in (("left", "default"), ("right", "fused")):
            field = self.driver.find_element(By.ID, name)
            field.clear()
            field.send_keys(arm)
        self.driver.find_element(By.CSS_SELECTOR, "form.search button[type=submit]").click()
        self.pages += 1
        WebDriverWait(self.driver, WAIT_S).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-column=right] .item")))
        left = self.driver.find_elements(By.CSS_SELECTOR, "[data-column=left] .item")
        right = self.driver.find_elements(By.CSS_SELECTOR, "[data-column=right] .item")
        self.check("compare: both rankings shown side by side", len(left) >= 5 and len(right) >= 5,
                   f"left {len(left)}, right {len(right)}")
        moves = self.driver.find_elements(By.CSS_SELECTOR,
                                          "[data-column=right] .move.up, [data-column=right] .move.down")
        self.check("compare: moves up and down shown", len(moves) >= 1,
                   ", ".join(move.get_attribute("aria-label") for move in moves[:4]))
        overlap = self.text("#overlap")
        self.check("compare: overlap shown", "products in both rankings" in overlap, overlap)
        qualities = [self.text(f"[data-quality={side}]") for side in ("left", "right")]
        self.check("compare: each side shows its nDCG@10 line", all("nDCG@10" in text for text in qualities),
                   " | ".join(qualities))
        self.shot("compare")

    def unservable_arm(self) -> None:
        """A reranker=V arm is explained, not failed; the other side still answers."""
        self.open("/compare?" + urlencode({"q": QUERY, "left": "no-personalization", "right": "reranker=2"}))
        message = self.text("[data-column=right] .message.error")
        left = self.driver.find_elements(By.CSS_SELECTOR, "[data-column=left] .item")
        self.check("compare: a reranker=V arm says the public API cannot ask for it",
                   "public API cannot ask for a reranker version" in message and len(left) >= 5, message[:160])

    def judge(self) -> None:
        """Rate three products on the comparison: saved in the judgments file, nDCG@10 shown for both sides."""
        self.open("/compare?" + urlencode({"q": QUERY, "left": "default", "right": "fused"}))
        items = self.driver.find_elements(By.CSS_SELECTOR, "[data-column=left] .item")
        rated = {}
        for item, gain in zip(items[:3], (3, 2, 0)):
            radio = item.find_element(By.CSS_SELECTOR, f"input[data-rate][value='{gain}']")
            radio.send_keys(Keys.SPACE)  # by keyboard, as a person tabbing through would
            rated[item.get_attribute("data-product")] = gain
            WebDriverWait(self.driver, WAIT_S).until(
                lambda _, item=item: item.find_element(By.CSS_SELECTOR, ".saved").text.startswith(("saved", "not")))
            status = item.find_element(By.CSS_SELECTOR, ".saved").text
            self.check(f"judge: a rating of {gain} saved", status.startswith("saved"), status)
        qualities = [self.text(f"[data-quality={side}]") for side in ("left", "right")]
        self.check("judge: both sides show a number for nDCG@10",
                   all(text.startswith("nDCG@10 0.") or text.startswith("nDCG@10 1.") for text in qualities),
                   " | ".join(qualities))
        # The same product on the right side shows the rating given on the left.
        first = next(iter(rated))
        mirrored = self.driver.find_elements(
            By.CSS_SELECTOR, f"[data-column=right] [data-product='{first}'] input[data-rate][value='3']")
        self.check("judge: the other side shows the same product's rating",
                   not mirrored or mirrored[0].is_selected(), first)
        # Rated again: the row is replaced, not repeated.
        again = items[0].find_element(By.CSS_SELECTOR, "input[data-rate][value='1']")
        again.send_keys(Keys.SPACE)
        rated[first] = 1
        WebDriverWait(self.driver, WAIT_S).until(
            lambda _: items[0].find_element(By.CSS_SELECTOR, ".saved").text == "saved 1")
        judged = load_judgments(self.judgments_file).get(QUERY, {})
        self.check("judge: the judgments file holds the ratings (core.judgments.load_judgments)",
                   all(judged.get(product) == gain for product, gain in rated.items()),
                   f"file {judged}, rated {rated}")
        with open(self.judgments_file, encoding="utf-8", newline="") as file:
            rows = [(row["query"], row["product_id"]) for row in csv.DictReader(file)]
        self.check("judge: a product rated twice has one row", len(rows) == len(set(rows)), f"{len(rows)} rows")
        self.shot("judged")

    def feedback(self) -> None:
        """As a new shopper, purchase the product ranked 8th: the search runs again and it moves up."""
        user = f"journey-{uuid.uuid4().hex[:8]}"
        self.open("/?" + urlencode({"q": QUERY, "user": user}))
        before = self.ids()
        target = self.driver.find_elements(By.CSS_SELECTOR, ".results .item")[min(PURCHASED_POSITION, len(before)) - 1]
        product = target.get_attribute("data-product")
        button = target.find_element(By.CSS_SELECTOR, "button[data-feedback=purchase]")
        button.send_keys(Keys.ENTER)
        WebDriverWait(self.driver, WAIT_S).until(expected_conditions.url_contains("sent=purchase"))
        self.pages += 1
        after = self.ids()
        self.moved = (product, before.index(product) + 1, after.index(product) + 1 if product in after else 0)
        self.check("feedback: a purchase moves the product up in the next search",
                   product in after and after.index(product) < before.index(product),
                   f"{product}: {self.moved[1]} -> {self.moved[2] or 'gone'}")
        notice = self.text("#sent-notice")
        self.check("feedback: the page says what moved", f"{product} is now at" in notice, notice[:200])
        arrow = self.driver.find_elements(By.CSS_SELECTOR, f".item[data-product='{product}'] .move.up")
        self.check("feedback: the moved product shows its move", bool(arrow), product)
        self.shot("purchase")
        # A click on another product: sent with the answer's request id and position, the search runs again.
        other = self.driver.find_elements(By.CSS_SELECTOR, ".results .item")[2]
        clicked = other.get_attribute("data-product")
        other.find_element(By.CSS_SELECTOR, "button[data-feedback=click]").click()
        WebDriverWait(self.driver, WAIT_S).until(expected_conditions.url_contains(f"sent=click%3A{clicked}"))
        self.pages += 1
        events = self.text(".event-list")
        self.check("feedback: the shopper's events sent from here are listed",
                   "purchase" in events and "click" in events and product in events and clicked in events, events[:200])

    def errors(self) -> None:
        """Bad input and a service that is down are clear messages (JSON for the API), never a trace."""
        self.open("/?" + urlencode({"q": QUERY, "top_k": "many"}), expect_error=True)
        message = self.text(".message.error")
        self.check("errors: bad input is a clear message in the page", "results must be a whole number" in message,
                   message)
        status, body = http(f"{self.url}/api/search?q=")
        self.check("errors: an API call with bad input is a 400 with a JSON error",
                   status == 400 and "error" in json.loads(body), f"{status} {body[:120]}")
        status, body = http(f"{self.url}/api/judgments", {"shop": "demo", "query": QUERY, "product_id": "D0001",
                                                          "gain": 7})
        self.check("errors: a rating out of 0..3 is refused", status == 400 and "0..3" in body,
                   f"{status} {body[:120]}")
        if self.down_url:
            self.open_absolute(f"{self.down_url}/?" + urlencode({"q": QUERY}), expect_error=True)
            message = self.text(".message.error")
            source = self.driver.page_source
            self.check("errors: a service that is down is a clear message in the page",
                       "did not answer" in message and "Traceback" not in source, message[:200])
            status, body = http(f"{self.down_url}/api/search?" + urlencode({"q": QUERY}))
            self.check("errors: an API call to a service that is down is a 503 with a JSON error",
                       status == 503 and "did not answer" in json.loads(body).get("error", ""), f"{status}")
            self.shot("service-down")

    def phone(self) -> None:
        """At a phone's width (390 px) the pages fit: no horizontal scroll."""
        self.driver.set_window_size(*PHONE)
        try:
            for name, path in (("search", "/?" + urlencode({"q": QUERY})),
                               ("compare", "/compare?" + urlencode({"q": QUERY, "left": "default",
                                                                     "right": "fused"}))):
                self.open(path)
                width, scroll = self.driver.execute_script(
                    "return [window.innerWidth, document.documentElement.scrollWidth];")
                self.check(f"phone: the {name} page has no horizontal scroll at {PHONE[0]} px",
                           width <= PHONE[0] and scroll <= width, f"window {width} px, content {scroll} px")
                self.shot(f"phone-{name}")
        finally:
            self.driver.set_window_size(1280, 900)

    # -- helpers -------------------------------------------------------------------------------------------------
    def open(self, path: str, expect_error: bool = False) -> None:
        self.open_absolute(self.url + path, expect_error)

    def open_absolute(self, url: str, expect_error: bool = False) -> None:
        self._drain_console("before " + url)
        self.driver.get(url)
        self.pages += 1
        WebDriverWait(self.driver, WAIT_S).until(
            lambda driver: driver.execute_script("return document.readyState") == "complete")
        if expect_error:  # the page's own error status is logged by Chrome as a failed load: expected here
            self._drain_console(url, ignore=ERROR_STATUS_LOG)

    def wait_items(self) -> list:
        WebDriverWait(self.driver, WAIT_S).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".results .item")))
        return self.driver.find_elements(By.CSS_SELECTOR, ".results .item")

    def ids(self) -> list[str]:
        return [item.get_attribute("data-product") for item in self.wait_items()]

    def text(self, selector: str) -> str:
        found = self.driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0].text if found else ""

    def shot(self, name: str) -> None:
        """A full-page screenshot, when the journey keeps them."""
        if self.screenshots is None:
            return
        self.screenshots.mkdir(parents=True, exist_ok=True)
        data = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True,
                                                                      "format": "png"})
        (self.screenshots / f"{len(list(self.screenshots.glob('*.png'))) + 1:02d}-{name}.png").write_bytes(
            base64.b64decode(data["data"]))

    def _drain_console(self, where: str, ignore: str = "") -> None:
        try:
            entries = self.driver.get_log("browser")
        except WebDriverException:
            return
        for entry in entries:
            if entry.get("level") == "SEVERE" and not (ignore and ignore in entry.get("message", "")):
                self.console.append(f"{where}: {entry.get('message', '')}")


def http(url: str, body: dict | None = None) -> tuple[int, str]:
    """(status, body text) of a GET, or of a POST of `body` as JSON."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def summary(journey: Journey) -> str:
    """The one line `make workbench-check` ends with."""
    return f"pages={journey.pages} checks={len(journey.checks)} failed={len(journey.failed)}"


def report(checks: list[Check], write: Callable[[str], None] = print) -> None:
    """Each check on a line: PASS or FAIL, its name and detail."""
    for check in checks:
        write(f"{'PASS' if check.passed else 'FAIL'} {check.name}" + (f": {check.detail}" if check.detail else ""))

