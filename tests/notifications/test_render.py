"""Rendering is pure: a Message in, each target kind's payload out, with no Django."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from notifications import render
from notifications.message import Message
from notifications.models import WebhookKind

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<!channel> *bold* & <https://evil.example|click>"


def _message(**overrides) -> Message:
    fields = {
        "event": "firing",
        "severity": "page",
        "summary": f"[PAGE] {HOSTILE} is burning",
        "link": "https://monoenv.example.com/api/v1/slos/1?a=1&b=2",
        "link_text": HOSTILE,
        "subject": "slo.alert:1",
        "details": {"slo": {"service": HOSTILE}},
    }
    return Message(**{**fields, **overrides})


def test_generic_json_carries_every_field_exactly():
    payload = render.as_json(_message())

    assert payload == {
        "event": "firing",
        "summary": f"[PAGE] {HOSTILE} is burning",
        "severity": "page",
        "slo": {"service": HOSTILE},
        "url": "https://monoenv.example.com/api/v1/slos/1?a=1&b=2",
    }


def test_slack_escapes_the_summary_and_the_link_text():
    payload = render.as_slack(_message())
    escaped = "&lt;!channel&gt; *bold* &amp; &lt;https://evil.example|click&gt;"

    assert payload["text"] == f"[PAGE] {escaped} is burning"
    section = payload["blocks"][0]["text"]
    assert section == {"type": "mrkdwn", "text": payload["text"], "verbatim": True}
    [link] = payload["blocks"][1]["elements"]
    assert link["text"] == (
        f"<https://monoenv.example.com/api/v1/slos/1?a=1&amp;b=2|{escaped}>"
    )
    assert link["verbatim"] is True


def test_slack_shows_nothing_it_has_not_escaped():
    # Every string Slack would show, wherever it sits in the payload.
    payload = render.as_slack(_message())
    shown = json.dumps(payload)

    assert "<!channel>" not in shown and "<https://evil" not in shown
    assert shown.count("<") == 1  # only the opening of Monoenv's own link


def test_a_pipe_in_the_link_cannot_start_the_link_text():
    payload = render.as_slack(_message(link="https://monoenv.example.com/x|<!here>"))

    assert payload["blocks"][1]["elements"][0]["text"].startswith(
        "<https://monoenv.example.com/x%7C&lt;!here&gt;|"
    )


def test_details_may_not_overwrite_the_payloads_own_keys():
    with pytest.raises(ValueError, match="summary"):
        _message(details={"summary": "spoofed"})


def test_there_is_a_renderer_for_every_target_kind():
    assert set(render.RENDERERS) == set(WebhookKind.values)


def test_the_renderer_imports_no_django():
    code = (
        "import sys, notifications.render; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
