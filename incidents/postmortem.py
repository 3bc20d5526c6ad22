"""Blameless post-mortem drafts, with the fields of the Google SRE book's example.

The draft fills in everything Monoenv observed (times, numbers, changes,
verdict findings, the timeline) and leaves what only people know as marked
prompts. It names services and changes, never people: deployers, owners and
note authors are left out of the text. Every value from telemetry is escaped
(incidents/markdown.py), so a service name cannot turn into a link or markup.

Monoenv rewrites the draft while nobody has edited it; a person's save makes
it theirs (PostMortem.edited) and is kept as a revision.
"""

from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils.safestring import SafeString, mark_safe

from incidents import sources
from incidents.markdown import escape, render
from incidents.models import (
    EntryKind,
    Incident,
    PostMortem,
    PostMortemRevision,
)

PROMPT = "> **To fill in:**"


def refresh_draft(incident: Incident, *, now: datetime) -> PostMortem:
    postmortem, created = PostMortem.objects.get_or_create(
        incident=incident, defaults={"markdown": draft(incident, now=now), "updated_at": now}
    )
    if not created and not postmortem.edited:
        postmortem.markdown = draft(incident, now=now)
        postmortem.updated_at = now
        postmortem.save(update_fields=["markdown", "updated_at"])
    return postmortem


def save_edit(incident: Incident, markdown: str, *, actor: str, now: datetime) -> PostMortem:
    """A person's version: kept, and never overwritten by Monoenv again."""
    with transaction.atomic():
        postmortem = refresh_draft(incident, now=now)
        postmortem = PostMortem.objects.select_for_update().get(pk=postmortem.pk)
        last = postmortem.revisions.aggregate(last=Max("number"))["last"] or 0
        if last == 0:
            # The draft the person started from is revision 1.
            PostMortemRevision.objects.create(
                postmortem=postmortem, number=1, markdown=postmortem.markdown, author="monoenv",
                created_at=now,
            )  # fmt: skip
            last = 1
        PostMortemRevision.objects.create(
            postmortem=postmortem, number=last + 1, markdown=markdown, author=actor, created_at=now
        )
        postmortem.markdown, postmortem.edited, postmortem.updated_at = markdown, True, now
        postmortem.save()
        if incident.acknowledged_at is None:
            Incident.objects.filter(pk=incident.pk).update(acknowledged_at=now)
    return postmortem


def as_html(text: str, *, heading_offset: int = 0) -> SafeString:
    """A post-mortem as HTML for a page.

    The one place that marks HTML safe: incidents/markdown.py renders with raw
    HTML off, links checked and images off, so nothing from the input reaches
    the page as markup (tests/incidents/test_postmortem.py tries hostile input).
    """
    return mark_safe(render(text, heading_offset=heading_offset))  # noqa: S308


def draft(incident: Incident, *, now: datetime) -> str:
    sections = [
        _header(incident, now=now),
        _summary(incident),
        _impact(incident),
        _trigger(incident),
        _detection(incident),
        _resolution(incident),
        _causes(incident),
        _action_items(incident),
        _lessons(incident),
        _timeline(incident),
        _supporting(incident),
    ]
    return "\n\n".join(section.strip() for section in sections) + "\n"


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at else "not yet"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "not yet"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _services(incident: Incident) -> str:
    return ", ".join(escape(s) for s in incident.services) or "no service named yet"


def _header(incident: Incident, *, now: datetime) -> str:
    state = incident.status
    if incident.status != "resolved" and incident.proposed_resolved_at:
        state += " (Monoenv proposes resolved)"
    return f"""# Post-mortem: {escape(incident.title)} (incident #{incident.pk})

- **Date:** {incident.started_at:%Y-%m-%d}
- **Status:** {state}; draft written by Monoenv from observed data, {_when(now)}
- **Services:** {_services(incident)}
- **Severity:** {incident.severity}"""


def _summary(incident: Incident) -> str:
    times = incident.impact or {}
    lasted = duration_text(times.get("duration_seconds"))
    trigger = escape(incident.trigger_summary) if incident.trigger_summary else "a person"
    return f"""## Summary

{_services(incident)} regressed from {_when(incident.started_at)} for {lasted}. It was opened
from: {trigger}.

{PROMPT} one or two sentences on what users saw, in plain words."""


def _impact(incident: Incident) -> str:
    impact = incident.impact or {}
    rows = ["| SLO | objective | budget consumed | bad units |", "|---|---|---|---|"]
    for slo in impact.get("slos", []):
        consumed = slo["budget_consumed_pct"]
        consumed_text = "n/a" if consumed is None else f"{consumed:.1f}%"
        rows.append(
            f"| {escape(slo['slo'])} | {slo['objective']}% | {consumed_text} "
            f"| {slo['bad']} {slo['unit']} |"
        )
    budget = "\n".join(rows) if len(rows) > 2 else "No SLO covers these services."
    return f"""## Impact

- **Failed requests:** {impact.get("failed_requests", 0)}
- **Slow requests:** {impact.get("slow_requests", 0)}
- **Affected users** (distinct `user.id` or `enduser.id` on failed or slow requests): \
{impact.get("affected_users", 0)}
- **Duration:** {duration_text(impact.get("duration_seconds"))}
- **Time to detect:** {duration_text(impact.get("time_to_detect_seconds"))}; \
**to mitigate:** {duration_text(impact.get("time_to_mitigate_seconds"))}; \
**to resolve:** {duration_text(impact.get("time_to_resolve_seconds"))}

Error budget consumed during the incident:

{budget}

{PROMPT} support requests, revenue or other effects Monoenv cannot see."""


def _trigger(incident: Incident) -> str:
    lines = ["## Trigger", ""]
    if incident.suspects:
        top = incident.suspects[0]
        what = "change" if top.get("kind") == "flag" else "deploy"
        when = (top["started_at"] or "")[:16].replace("T", " ")
        at = f" at {when} UTC" if when else ""
        lines.append(
            _with_evidence(
                f"The most likely change: {_change_name(top)}{at} ([{what}]({top['link']}))",
                top.get("evidence"),
            )
        )
        findings = sources.significant_findings([top["deployment_id"]] if top.get(
            "deployment_id") else [])  # fmt: skip
        for finding in findings[:10]:
            route = escape(finding.route or "the whole service")
            lines.append(f"- {escape(finding.metric)} on {route}: {escape(finding.detail)}")
    else:
        lines.append("Monoenv found no change that explains the regression.")
    lines += ["", f"{PROMPT} confirm or correct the change that triggered it."]
    return "\n".join(lines)


def _with_evidence(sentence: str, evidence: str | None) -> str:
    """The sentence, then ": evidence." when the ranking recorded any; never a dangling colon."""
    evidence = (evidence or "").strip().rstrip(".")
    return f"{sentence}: {escape(evidence)}." if evidence else f"{sentence}."


def _change_name(suspect: dict) -> str:
    if suspect.get("kind") == "flag":
        return f"change of flag {escape(suspect['version'])}"
    return f"deploy of {escape(suspect['service'])} {escape(suspect['version'])}"


def _detection(incident: Incident) -> str:
    signals = list(incident.signals.all())
    first = signals[0] if signals else None
    how = escape(first.summary) if first else "declared by a person"
    ttd = duration_text((incident.impact or {}).get("time_to_detect_seconds"))
    more = f" {len(signals) - 1} more signal(s) joined it." if len(signals) > 1 else ""
    return f"""## Detection

Detected at {_when(incident.detected_at)}, {ttd} after the regression began: {how}.{more}"""


def _resolution(incident: Incident) -> str:
    proposal = escape(incident.proposal_reason) if incident.proposal_reason else ""
    mitigated = incident.mitigated_at or incident.proposed_mitigated_at
    lines = ["## Resolution", ""]
    lines.append(f"Mitigated at {_when(mitigated)}" + (f": {proposal}." if proposal else "."))
    lines.append(f"Resolved at {_when(incident.resolved_at or incident.proposed_resolved_at)}.")
    lines += ["", f"{PROMPT} what was done, and what made the team choose it."]
    return "\n".join(lines)


def _causes(incident: Incident) -> str:
    suspects = [
        _with_evidence(f"{index}. {_change_name(s)}", s.get("evidence"))
        for index, s in enumerate(incident.suspects[:5], start=1)
    ]
    listed = "\n".join(suspects) or "Monoenv ranked no change events."
    return f"""## Root causes and contributing factors

Change events Monoenv ranked as suspects, best first:

{listed}

{PROMPT} the root causes: why the change behaved as it did, and why it reached production.
Name systems and changes, not people.

{PROMPT} contributing factors (load, configuration, dependencies, timing)."""


def _action_items(incident: Incident) -> str:
    rows = ["| Action item | Type | Owner | Status |", "|---|---|---|---|"]
    for item in incident.action_items.all():
        link = f" ([ticket]({item.link}))" if item.link.startswith(("https://", "http://")) else ""
        rows.append(
            f"| {escape(item.title)}{link} | {item.kind} | {escape(item.owner) or '—'} "
            f"| {item.status} |"
        )
    if len(rows) == 2:
        rows.append("| _To fill in_ | mitigate / prevent / process | | open |")
    return "## Action items\n\n" + "\n".join(rows)


def _lessons(incident: Incident) -> str:
    impact = incident.impact or {}
    went_well = []
    ttd = impact.get("time_to_detect_seconds")
    if ttd is not None and ttd <= 15 * 60:
        went_well.append(f"- Monoenv detected the regression {duration_text(ttd)} after it began.")
    ttm = impact.get("time_to_mitigate_seconds")
    if ttm is not None and ttm <= 3600:
        went_well.append(f"- It was mitigated {duration_text(ttm)} after it began.")
    well = "\n".join(went_well)
    return f"""## Lessons learned

### What went well

{well}

{PROMPT} what went well.

### What went wrong

{PROMPT} what went wrong.

### Where we got lucky

{PROMPT} where we got lucky."""


ENTRY_LABELS = {kind: kind.label for kind in EntryKind}


def _timeline(incident: Incident) -> str:
    lines = ["## Timeline", "", "All times UTC.", ""]
    for entry in incident.timeline.all():
        link = f" ([link]({entry.link}))" if entry.link.startswith(("https://", "http://")) else ""
        lines.append(
            f"- **{entry.at:%Y-%m-%d %H:%M}** {ENTRY_LABELS.get(entry.kind, entry.kind)}: "
            f"{escape(entry.summary)}{link}"
        )
    return "\n".join(lines)


def _supporting(incident: Incident) -> str:
    return f"""## Supporting information

- The incident, with its budget burndown and change markers: {incident.link()}
- The API record: {incident.api_link()}"""
