"""The sweep report one self-contained HTML page, checked in headless Chromium, and
the same sweep as Markdown.

The page is built from verdicts the real grader produced (tests/browser/sweeps.py) with an
attacker payload in every string an attacker controls, and from a simulated tenant swept through
the CLI with ``--html``. In the browser, with the page's CSP switched off so that only escaping
stands between a payload and execution, nothing runs, nothing is injected, and every name reads
exactly as the telemetry spells it. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from browser.chromium import Chromium, Page
from browser.sweeps import NAMES, NEVER_SEEN, SCRIPT_CLOSE, SCRIPT_TAG, SENTINEL, hostile_sweep
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from grading.cli import main
from grading.report import CSP, DATA_ELEMENT_ID, render_html, render_markdown
from grading.report.markdown import md_code, md_text
from grading.report.markup import el, json_for_script, visible

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# How each hostile name must read on the page: as spelt, with control and format characters
# (newline, U+2028/2029 separators, a right-to-left override) shown as escapes.
SHOWN = {name: name for name in NAMES.values()}
SHOWN[NAMES["expected"]] = 'Migration "><img src=x onerror="window.__pwned=1">\\nline\\u2028sep\\u2029end \\u202eevil'


def shown(name: str) -> str:
    return SHOWN[name]


# ---------------------------------------------------------------------------------------------
# Fixtures: one browser and one loaded page for the module (a page load takes well under a second).


@pytest.fixture(scope="module")
def hostile() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return hostile_sweep()


@pytest.fixture(scope="module")
def report_file(hostile: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(*hostile), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def page(browser: Chromium, report_file: Path) -> Iterator[Page]:
    """The hostile report with its CSP bypassed: only escaping protects it."""
    with browser.page(report_file.as_uri(), bypass_csp=True) as loaded:
        yield loaded


def _card_selector(page: Page, connector: str) -> str:
    """The CSS selector of *connector*'s card, found through the overview's link to it."""
    anchors = page.evaluate(
        "[...document.querySelectorAll('table.overview a.name')].map(a => [a.textContent, a.getAttribute('href')])"
    )
    return dict(anchors)[shown(connector)]


INJECTION_PROBE = """(() => {
  const all = [...document.querySelectorAll('*')];
  const comments = document.createTreeWalker(document, NodeFilter.SHOW_COMMENT);
  let commentCount = 0; while (comments.nextNode()) commentCount++;
  return {
    sentinel: typeof window.__SENTINEL__,
    imgs: document.querySelectorAll('img').length,
    scripts: [...document.scripts].map(s => s.type),
    handlers: all.filter(e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
    svgs: document.querySelectorAll('svg').length,
    charts: document.querySelectorAll('svg.chart').length,
    cards: document.querySelectorAll('.card').length,
    comments: commentCount,
    title: document.title,
  };
})()""".replace("__SENTINEL__", SENTINEL)


# ---------------------------------------------------------------------------------------------
# In the browser


def test_payloads_in_every_context_stay_text(page: Page, hostile: Any) -> None:
    probe = page.evaluate(INJECTION_PROBE)
    assert probe["sentinel"] == "undefined"
    assert probe["imgs"] == 0
    assert probe["scripts"] == ["application/json"]  # the data block, never executed
    assert probe["handlers"] == 0
    assert probe["comments"] == 0  # "<!--" in a name opened no comment
    # Every <svg> is one of the charts (an "<svg onload>" payload would add its own), one per card.
    assert probe["svgs"] == probe["charts"] == probe["cards"] == 4
    assert probe["title"] == "Connector sweep 20261120T000000Z-test: 2026-11-19 00:00 UTC to 2026-11-20 00:00 UTC"
    shot = page.screenshot(ARTIFACTS / "report-hostile.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_names_read_exactly_in_text_attributes_and_svg(page: Page, hostile: Any) -> None:
    verdicts, _ = hostile
    overview = page.evaluate("[...document.querySelectorAll('table.overview .name')].map(n => n.textContent)")
    assert sorted(overview) == sorted(shown(v["connector"]) for v in verdicts)
    cards = page.evaluate(
        """[...document.querySelectorAll('.card')].map(c => ({
            label: c.getAttribute('aria-label'),
            heading: c.querySelector('h3 .name').textContent,
            chartTitle: c.querySelector('svg.chart > title').textContent,
            markerTips: [...c.querySelectorAll('svg.chart g.marker > title')].map(t => t.textContent),
        }))"""
    )
    flagged = [n for n in NAMES.values() if n not in (NAMES["quiet"], NAMES["plain"])]
    assert sorted(c["heading"] for c in cards) == sorted(shown(n) for n in flagged)
    for card in cards:
        assert card["label"] == f"Connector {card['heading']}"  # attribute context
        assert card["chartTitle"] == f"Hourly mail volume of connector {card['heading']}"  # SVG text
    spray = next(c for c in cards if c["heading"] == NAMES["spray"])
    # The attacker's UPN (an attribute-breaking payload) reads as it is in the SVG marker tooltips.
    assert any('admin"><img src=x onerror="window.__pwned=1">@contoso.example' in t for t in spray["markerTips"])


def test_overview_groups_by_classification_then_score(page: Page, hostile: Any) -> None:
    rows = page.evaluate(
        """[...document.querySelectorAll('table.overview tbody tr')].map(r => r.classList.contains('group')
            ? {group: r.textContent}
            : {name: r.querySelector('.name').textContent, score: Number(r.querySelector('td.score').textContent)})"""
    )
    groups = [r["group"] for r in rows if "group" in r]
    assert groups == ["True positives (2)", "Needs review (1)", "Expected activity (1)", "False positives (2)"]
    by_name = {shown(v["connector"]): v for v in hostile[0]}
    order = [
        "truePositive",
        "truePositive",
        "unknown",
        "informationalExpectedActivity",
        "falsePositive",
        "falsePositive",
    ]
    named = [r for r in rows if "name" in r]
    assert [by_name[r["name"]]["classification"] for r in named] == order
    for a, b in itertools.pairwise(named):
        if by_name[a["name"]]["classification"] == by_name[b["name"]]["classification"]:
            assert (-a["score"], a["name"]) <= (-b["score"], b["name"])
    assert [r["score"] for r in named] == [by_name[r["name"]]["score"] for r in named]


def test_flagged_card_shows_findings_evidence_and_marked_chart(page: Page, hostile: Any) -> None:
    spray = next(v for v in hostile[0] if v["connector"] == NAMES["spray"])
    card = page.call(
        """sel => { const c = document.querySelector(sel); const cell = t => [...c.querySelectorAll('caption')]
              .find(x => x.textContent === t).closest('table');
          return {
            findings: [...c.querySelectorAll('ol.findings > li')].map(li => ({
                sev: li.querySelector('.sev').textContent, text: li.textContent})),
            neverSeen: [...cell('External recipient domains').querySelectorAll('tr:last-child td:last-child li')]
                .map(li => li.textContent),
            known: [...cell('External recipient domains').querySelectorAll('tr:last-child td:nth-child(2) li')]
                .map(li => li.textContent),
            admins: cell('Admins who changed it').querySelector('tbody td').textContent,
            changes: [...cell('Configuration changes in the lookback').querySelectorAll('tbody td')]
                .map(td => td.textContent),
            panels: Object.fromEntries([...c.querySelectorAll('.panel')].map(p => [
                p.querySelector('.panel-title').textContent, [...p.querySelectorAll('li')].map(li => li.textContent)])),
            bars: [...c.querySelectorAll('svg.chart rect.bar')].map(r => ({
                x: Number(r.getAttribute('x')), w: Number(r.getAttribute('width')),
                tip: r.querySelector('title').textContent})),
            band: c.querySelectorAll('svg.chart rect.band').length,
            markers: [...c.querySelectorAll('svg.chart g.marker')].map(g => ({
                kind: g.classList.contains('change') ? 'change' : 'admin',
                x: Number(g.querySelector('line').getAttribute('x1')),
                label: g.querySelector('text').textContent})),
            noBand: c.querySelector('.legend .noband')?.textContent,
          }; }""",
        _card_selector(page, NAMES["spray"]),
    )
    # Findings in plain words, strongest first, one per finding of the verdict.
    assert [f["sev"] for f in card["findings"]] == [f["severity"] for f in spray["findings"]]
    assert any("180 failed logons within a minute" in f["text"] for f in card["findings"])
    # Evidence: recipients split into known and never seen, the admin, the change, ids and URLs.
    assert card["neverSeen"] == sorted(NEVER_SEEN)
    assert card["known"] == ["fabrikam.example"]
    assert card["admins"] == 'admin"><img src=x onerror="window.__pwned=1">@contoso.example'
    assert card["changes"][:2] == ["2026-11-19 16:28 UTC", "New-InboundConnector"]
    assert card["panels"]["Source IPs"] == ["203.0.113.7", "203.0.113.8"]
    assert card["panels"]["Linked Defender alerts"] == [f"da-{SCRIPT_CLOSE}"]
    assert sorted(card["panels"]["URLs in the mail (defanged)"]) == [
        f"hxxps://evil[.]example/login?u={SCRIPT_TAG}",
        "hxxps://phish[.]example/a\\u2028b",
        "javascript:window[.]__pwned=1",
    ]
    assert len(card["panels"]["NetworkMessageIds"]) == 14
    # The chart: one bar per hour with mail, no band (the connector is new, and the legend says so),
    # the creation marked after the admin's compromise and just before the first hour of spray.
    hours = [p for p in spray["evidence"]["hourlyVolume"]["series"] if p["messages"]]
    assert len(card["bars"]) == len(hours) == 7
    assert card["band"] == 0 and card["noBand"].startswith("No baseline band: created within the change lookback")
    change = [m for m in card["markers"] if m["kind"] == "change"]
    admin = [m for m in card["markers"] if m["kind"] == "admin"]
    logon_anomalies = [
        f
        for f in spray["findings"]
        if {"successTime", "firstSuccess"} & set(f["evidence"]) and f["check"] == "adminCompromise"
    ]
    assert [m["label"] for m in change] == ["C1"]
    assert sorted(m["label"] for m in admin) == [f"A{i}" for i in range(1, len(logon_anomalies) + 1)]
    assert logon_anomalies
    first_bar = card["bars"][0]
    assert first_bar["tip"].startswith("2026-11-19 17:00 UTC")
    assert first_bar["x"] - first_bar["w"] < change[0]["x"] < first_bar["x"]  # 16:28, in the 16:00 hour
    assert all(m["x"] < change[0]["x"] for m in admin)


def test_chart_draws_the_band_and_the_hours_above_it(page: Page, hostile: Any) -> None:
    supply = next(v for v in hostile[0] if v["connector"] == NAMES["supply"])
    volume = supply["evidence"]["hourlyVolume"]
    upper = volume["baseline"]["upper"]
    chart = page.call(
        """sel => { const c = document.querySelector(sel);
          const bars = [...c.querySelectorAll('svg.chart rect.bar')];
          const y0 = Math.max(...bars.map(b => Number(b.getAttribute('y')) + Number(b.getAttribute('height'))));
          const band = c.querySelector('svg.chart rect.band');
          return {above: c.querySelectorAll('svg.chart rect.bar.above').length, y0,
                  bandTop: Number(band.getAttribute('y')),
                  bars: bars.map(b => ({h: Number(b.getAttribute('height')),
                                        tip: b.querySelector('title').textContent}))};
        }""",
        _card_selector(page, NAMES["supply"]),
    )
    assert chart["above"] == sum(1 for p in volume["series"] if p["messages"] > upper) == 5
    # Heights are proportional to the counts, and the band's top sits at its upper bound.
    big = next(b for b in chart["bars"] if b["tip"].endswith("400 messages (above the normal band)"))
    small = next(b for b in chart["bars"] if "messages" in b["tip"] and "above" not in b["tip"])
    small_count = int(re.search(r": (\d+) messages", small["tip"]).group(1))
    assert big["h"] / small["h"] == pytest.approx(400 / small_count, rel=0.03)
    assert (chart["y0"] - chart["bandTop"]) / big["h"] == pytest.approx(upper / 400, rel=0.03)


def test_embedded_json_gives_back_the_sweep(page: Page, hostile: Any, report_file: Path) -> None:
    verdicts, sweep = hostile
    embedded = page.evaluate(f"JSON.parse(document.getElementById({DATA_ELEMENT_ID!r}).textContent)")
    assert embedded == json.loads(json.dumps({"verdicts": verdicts, "sweep": sweep}, default=str))
    source = report_file.read_text(encoding="utf-8")
    assert len(re.findall(r"</script", source, re.IGNORECASE)) == 1  # only the data block's own end
    assert "<!--" not in source and "\u2028" not in source and "\u2029" not in source


def test_page_is_self_contained_and_its_policy_allows_no_script(browser: Chromium, report_file: Path) -> None:
    source = report_file.read_text(encoding="utf-8")
    assert "@import" not in source and "url(" not in source and "<link" not in source
    with browser.page(report_file.as_uri()) as strict:  # the real CSP this time
        assert strict.requested_urls() == [report_file.as_uri()]
        links_out = strict.evaluate(
            """[...document.querySelectorAll('[src],[srcset],[action],[poster],[data],[href]')]
                 .filter(e => !(e.getAttribute('href') || '').startsWith('#')).length"""
        )
        assert links_out == 0
        # The stylesheet is allowed by its hash (the header is styled), and nothing was refused.
        colour = strict.evaluate("getComputedStyle(document.querySelector('header.top')).backgroundColor")
        assert colour == "rgb(29, 41, 57)"
        assert not [m for m in strict.console() if "Content Security Policy" in m]
        assert strict.evaluate(f"typeof window.{SENTINEL}") == "undefined"


def test_the_browser_check_catches_a_missed_escape(browser: Chromium, report_file: Path, tmp_path: Path) -> None:
    """Control: the same page with one payload spliced in raw. Without the CSP the sentinel is set
    (so the checks above can fail); with it the script is refused (the second wall holds)."""
    broken = tmp_path / "broken.html"
    source = report_file.read_text(encoding="utf-8")
    broken.write_text(source.replace("<main>", f"<main>{SCRIPT_TAG}", 1), encoding="utf-8")
    with browser.page(broken.as_uri(), bypass_csp=True) as unprotected:
        assert unprotected.evaluate(f"window.{SENTINEL}") == 1
    with browser.page(broken.as_uri()) as protected:
        assert protected.evaluate(f"typeof window.{SENTINEL}") == "undefined"
        assert any("Content Security Policy" in m for m in protected.console())


# ---------------------------------------------------------------------------------------------
# A simulated tenant, swept through the CLI


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("simulated")
    data = root / "export"
    args = ["simulate", str(data), "--seed", "11", "--days", "7", "--emails-per-day", "2000", "--connectors", "8"]
    assert main([*args, "--hostile-names"]) == 0
    out = {"html": root / "report.html", "markdown": root / "report.md", "json": root / "sweep.json"}
    sweep_args = ["sweep", "--data", str(data), "--store", "memory"]
    assert main([*sweep_args, *(a for kind, p in out.items() for a in (f"--{kind}", str(p)))]) == 0
    return out


def test_cli_report_of_a_simulated_hostile_tenant(browser: Chromium, simulated: dict[str, Path]) -> None:
    doc = json.loads(simulated["json"].read_text(encoding="utf-8"))
    names = [v["connector"] for v in doc["verdicts"]]
    assert any("<script>" in n for n in names) and any("\n" in n for n in names)
    with browser.page(simulated["html"].as_uri(), bypass_csp=True) as sim:
        probe = sim.evaluate(INJECTION_PROBE)
        assert probe["sentinel"] == "undefined" and probe["imgs"] == 0 and probe["handlers"] == 0
        assert probe["scripts"] == ["application/json"] and probe["svgs"] == probe["charts"] == probe["cards"]
        overview = sim.evaluate("[...document.querySelectorAll('table.overview .name')].map(n => n.textContent)")
        # Names read exactly as spelt, control and format characters shown as escapes (the report's rule).
        expected = [visible(n) for n in names]
        assert sorted(overview) == sorted(expected)
        assert sim.evaluate(f"JSON.parse(document.getElementById({DATA_ELEMENT_ID!r}).textContent)") == doc
        sim.screenshot(ARTIFACTS / "report-simulated.png")
    markdown = simulated["markdown"].read_text(encoding="utf-8")
    assert markdown.startswith("# Exchange Online connector sweep")


# ---------------------------------------------------------------------------------------------
# Without a browser: the Markdown, and the escaping primitives


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[tuple[str, str]] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.text.append((self._open[-1] if self._open else "", data))


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


def test_markdown_renders_names_as_code_and_injects_nothing(hostile: Any) -> None:
    verdicts, sweep = hostile
    text = render_markdown(verdicts, sweep)
    # Rendered as a renderer that passes raw HTML through would (GitHub sanitises later; a ticket
    # system may not): nothing but Markdown's own elements may come out.
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    parsed = _parse(rendered)
    allowed = {
        "h1",
        "h2",
        "h3",
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "ul",
        "li",
        "strong",
        "em",
        "blockquote",
    }
    assert {t for t, _ in parsed.tags} <= allowed
    assert all(not any(k.startswith("on") for k in a) for _, a in parsed.tags)
    codes = [d for tag, d in parsed.text if tag == "code"]
    for v in verdicts:
        assert shown(v["connector"]) in codes  # each name, exactly, in a code span
    rows = re.findall(r"<tr>(.*?)</tr>", rendered, re.S)
    assert rows and all(row.count("<td") in (0, 5) for row in rows)  # no name split a table row
    assert "hxxps://evil[.]example/login?u=" + SCRIPT_TAG in codes
    assert "## Needs review (1)" in text and text.index("## True positives") < text.index("## Needs review")


@settings(max_examples=300, deadline=None)
@given(st.text() | st.text(alphabet="<>&\"'`*_[]()#+-=.!|~{}$\\:/ab1 \n\u2028"))
def test_any_text_stays_literal_prose_in_markdown(value: str) -> None:
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(f"- {md_text(value)}\n")
    parsed = _parse(rendered)
    assert [t for t, _ in parsed.tags] == ["ul", "li"]
    assert "".join(d for _, d in parsed.text).strip("\n") == _visible(value)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1) | st.text(alphabet="<>&\"'`*_[]|#\\ ab\n", min_size=1))
def test_any_name_is_one_literal_code_span_in_a_markdown_table(value: str) -> None:
    table = f"| a | b |\n|---|---|\n| {md_code(value, in_table=True)} | x |\n"
    parsed = _parse(MarkdownIt("commonmark", {"html": True}).enable("table").render(table))
    assert [t for t, _ in parsed.tags].count("td") == 2
    if _visible(value).strip(" "):  # a span of spaces only is shown as spaces, however many
        assert [d for tag, d in parsed.text if tag == "code"] == [_visible(value)]


@settings(max_examples=200, deadline=None)
@given(st.text() | st.text(alphabet="<>&\"'/=!-ab \n\u2028\u202e"))
def test_any_text_survives_an_html_parser_as_text(value: str) -> None:
    html = el("p", {"title": value, "data-x": value}, value)
    parsed = _parse(html)
    visible = _visible(value)
    assert parsed.tags[0] == ("p", {"title": visible, "data-x": visible})
    assert {t for t, _ in parsed.tags[1:]} <= {"span"}  # only the highlighted escapes
    assert "".join(d for _, d in parsed.text) == visible


def _visible(value: str) -> str:
    """The escapes the report promises for control and format characters (written out independently)."""
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return "".join(
        (named.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")) if _hidden(c) else c
        for c in value
    )


def _hidden(c: str) -> bool:
    return unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"}


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    )
)
def test_embedded_json_round_trips_and_cannot_close_its_block(doc: Any) -> None:
    encoded = json_for_script(doc)
    assert json.loads(encoded) == doc
    assert not set(encoded) & {"<", ">", "&", "\u2028", "\u2029"}
    assert encoded.isascii()


@pytest.mark.parametrize(
    ("tag", "attrs"),
    [("p", {"onclick": "x"}), ("p", {"style": "x"}), ("a", {"href": "https://evil.example"}), ("script", None)],
)
def test_builder_refuses_what_would_run_or_link_out(tag: str, attrs: dict[str, str] | None) -> None:
    with pytest.raises(ValueError):
        el(tag, attrs, "x")


def test_csp_allows_only_the_page_stylesheet() -> None:
    assert "default-src 'none'" in CSP and "script-src 'none'" in CSP
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/]+=*'", CSP) and "unsafe-inline" not in CSP


def test_an_incomplete_sweep_says_so_first(hostile: Any) -> None:
    _, sweep = hostile
    broken = {
        **sweep,
        "complete": False,
        "connectors": 0,
        "errors": [f"mail_coverage: no EmailEvents at all in the graded window {SCRIPT_TAG}"],
    }
    parsed = _parse(render_html([], broken))
    banner = [d for tag, d in parsed.text if tag == "li"]
    assert f"mail_coverage: no EmailEvents at all in the graded window {SCRIPT_TAG}" in banner
    assert ("div", {"class": "banner bad"}) in parsed.tags
    assert not any(t == "script" and a.get("type") != "application/json" for t, a in parsed.tags)
    assert any("No connector had mail in the window" in d for _, d in parsed.text)
