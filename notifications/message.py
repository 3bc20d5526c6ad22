"""What an app hands the outbox: one neutral message, before any target shapes it.

Pure: no Django. Every text field may carry span data (service names,
versions, routes, exception types) and is escaped by the renderer of each
target kind, never by the app that builds the message.
"""

from dataclasses import dataclass, field

# The generic JSON payload's own keys; details may not overwrite them.
RESERVED_KEYS = frozenset({"event", "summary", "severity", "url"})


@dataclass(frozen=True)
class Message:
    event: str  # what happened, as receivers match on it: "firing", "deploy_verdict"
    severity: str  # "page" or "ticket": targets choose the severities they take
    summary: str  # one self-contained sentence or two, for people
    link: str  # where to read more in Monoenv
    link_text: str
    subject: str  # what it is about, "<app>.<model>:<id>", kept on each Delivery
    details: dict = field(default_factory=dict)  # the generic JSON payload's other keys

    def __post_init__(self):
        clash = RESERVED_KEYS & set(self.details)
        if clash:
            raise ValueError(f"details may not set {', '.join(sorted(clash))}")
