"""Post-mortem drafts: the SRE book's fields, blameless, escaped, and rendered safely."""

from datetime import timedelta
from html.parser import HTMLParser

import pytest

from deployments.models import Suspect
from incidents import jobs, postmortem
from incidents.markdown import escape, render
from incidents.models import Incident, PostMortem
from tests.incidents import factories as f

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)
HOSTILE = '<script>alert(1)</script>[click](javascript:alert(2))"><img src=x onerror=alert(3)>'

SECTIONS = [
    "# Post-mortem:", "- **Date:**", "- **Status:**", "## Summary", "## Impact", "## Trigger",
    "## Detection", "## Resolution", "## Root causes and contributing factors",
    "## Action items", "## Lessons learned", "### What went well", "### What went wrong",
    "### Where we got lucky", "## Timeline", "## Supporting information",
]  # fmt: skip


@pytest.fixture
def incident(t0):
    slo = f.make_slo()
    f.slo_minutes(slo, t0 - 30 * M, 30, bad=0)
    f.slo_minutes(slo, t0, 20, bad=30)
    bad = f.deploy("checkout", "2.0", t0 - 2 * M, deployer="ana@example.com",
                   commit_sha="abc123")  # fmt: skip
    f.suspect_of_alert(f.page_alert(slo, t0 + 6 * M), bad)
    jobs.run_once(now=t0 + 7 * M)
    return Incident.objects.get()


def test_the_draft_has_every_field_of_the_sre_book_example(incident):
    text = PostMortem.objects.get(incident=incident).markdown
    positions = [text.index(heading) for heading in SECTIONS]
    assert positions == sorted(positions)
    assert "> **To fill in:**" in text


def test_the_draft_fills_in_what_monoenv_observed(incident, t0):
    text = PostMortem.objects.get(incident=incident).markdown
    assert f"regressed from {t0:%Y-%m-%d %H:%M} UTC" in text
    assert "6 min after the regression began" in text  # detection
    assert "deploy of checkout 2\\.0" in text  # the trigger, escaped
    assert "| checkout\\-availability | 99.0% |" in text


def test_the_draft_names_changes_never_people(incident):
    text = PostMortem.objects.get(incident=incident).markdown
    assert "ana" not in text


def test_a_persons_edit_is_kept_and_never_overwritten(incident, t0):
    postmortem.save_edit(incident, "# Ours", actor="ana", now=t0 + 8 * M)
    jobs.run_once(now=t0 + 9 * M)
    saved = PostMortem.objects.get(incident=incident)
    assert saved.markdown == "# Ours" and saved.edited
    assert [r.number for r in saved.revisions.all()] == [2, 1]


def test_hostile_service_names_stay_literal_in_the_draft(t0):
    f.failed_deploy(HOSTILE, "1.0 **bold**", t0, evaluated_at=t0 + 5 * M)
    jobs.run_once(now=t0 + 6 * M)
    html = render(PostMortem.objects.get().markdown)
    assert {tag for tag, _ in tags_of(html)} <= SAFE_TAGS
    assert 'href="javascript' not in html and "<strong>bold</strong>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    "markdown",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "![x](https://tracker.example/pixel.png)",
        "<a href='https://e.example' onclick='alert(1)'>x</a>",
        "```\n</code><script>alert(1)</script>\n```",
        "<svg/onload=alert(1)>",
        "[x](&#106;avascript:alert(1))",
    ],
)
def test_the_renderer_lets_no_html_or_script_through(markdown):
    for tag, attributes in tags_of(render(markdown)):
        assert tag in SAFE_TAGS, tag
        for name, value in attributes:
            assert (tag, name) in SAFE_ATTRIBUTES, (tag, name)
            if name == "href":
                assert value.startswith(("https://", "http://", "#")), value


SAFE_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "a", "strong", "em", "code", "pre", "ul",
             "ol", "li", "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td"}
SAFE_ATTRIBUTES = {("a", "href"), ("code", "class"), ("th", "style"), ("td", "style")}


def tags_of(html: str) -> list[tuple[str, list]]:
    """Every start tag with its attributes, as a browser's parser would see them."""
    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collector().feed(html)
    return found


def test_the_renderer_keeps_markdown_formatting():
    html = render("## Impact\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n**bold** [ok](https://e.example)")
    assert "<h2>Impact</h2>" in html and "<table>" in html and "<strong>bold</strong>" in html
    assert '<a href="https://e.example">ok</a>' in html


def test_escape_makes_markdown_syntax_literal():
    assert render(escape("[a](https://e.example) *b* `c` # d")).strip() == (
        "<p>[a](https://e.example) *b* `c` # d</p>"
    )


def test_headings_move_down_under_a_pages_own_title():
    assert render("# A\n\n###### B", heading_offset=1) == "<h2>A</h2>\n<h6>B</h6>\n"


def test_the_trigger_is_a_whole_sentence_when_the_suspect_has_no_evidence(t0):
    slo = f.make_slo()
    f.slo_minutes(slo, t0 - 30 * M, 30, bad=0)
    f.slo_minutes(slo, t0, 20, bad=30)
    bad = f.deploy("checkout", "2.0", t0 - 2 * M)
    suspect = f.suspect_of_alert(f.page_alert(slo, t0 + 6 * M), bad)
    Suspect.objects.filter(pk=suspect.pk).update(evidence="")
    jobs.run_once(now=t0 + 7 * M)

    text = PostMortem.objects.get().markdown
    trigger = text.split("## Trigger\n\n", 1)[1].splitlines()[0]
    assert trigger.startswith(
        f"The most likely change: deploy of checkout 2\\.0 at {t0 - 2 * M:%Y-%m-%d %H:%M} UTC "
        "([deploy](http"
    ), trigger
    assert trigger.endswith(f"/deploys/{bad.pk}/)).")
    assert "1. deploy of checkout 2\\.0.\n" in text  # the root causes' list, likewise
    assert ": ." not in text and ": \n" not in text
