"""A Message as each target kind wants it. Pure: no Django, no settings.

Generic JSON carries every field exactly (receivers parse it, nothing is
interpreted). Slack interprets `<`, `>` and `&` in text as mentions and
links, so every text that reaches Slack goes through `slack_text` or
`slack_url`, whatever it holds: a service named `<!channel>` must not
notify a channel, and a reason naming `<https://evil|click>` must not make a
link.
"""

from notifications.message import Message


def as_json(message: Message) -> dict:
    payload = {"event": message.event, "summary": message.summary, "severity": message.severity}
    payload.update(message.details)
    payload["url"] = message.link
    return payload


def as_slack(message: Message) -> dict:
    summary = slack_text(message.summary)
    link = f"<{slack_url(message.link)}|{slack_text(message.link_text)}>"
    # verbatim: Slack does not turn names in the text into links or mentions.
    return {
        "text": summary,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": summary, "verbatim": True}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": link, "verbatim": True}],
            },
        ],
    }


def slack_text(text: str) -> str:
    """Slack's escaping of message text: the three characters it gives meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_url(url: str) -> str:
    # A `|` would end the URL and start the link's text.
    return slack_text(url).replace("|", "%7C")


# One renderer per target kind (notifications.models.WebhookKind).
RENDERERS = {"json": as_json, "slack": as_slack}


def render(message: Message, kind: str) -> dict:
    return RENDERERS[kind](message)
