"""What the webhooks of flag systems say, as flag changes; and their signature checks.

Pure code with no Django. Each mapper takes the parsed JSON body and returns
the fields of a change (see flags/changes.py), or None for an event that
changes no flag's serving. docs/flags.md documents the mapping field by field.

Signatures, as each system signs:
- Flagsmith: X-Flagsmith-Signature, the hex HMAC-SHA256 of the raw body keyed
  with the webhook secret;
- LaunchDarkly: X-LD-Signature, the same construction;
- Unleash: its webhook addon signs nothing; it sends the configured
  `Authorization` header value verbatim, compared here in constant time.
"""

import hashlib
import hmac
from datetime import UTC, datetime


class BadSignature(Exception):
    pass


def check_hmac_sha256(secret: str, body: bytes, signature: str, *, header: str) -> None:
    if not secret:
        raise BadSignature("no secret is configured for this webhook")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
        raise BadSignature(f"bad {header}")


def check_shared_secret(secret: str, presented: str, *, header: str) -> None:
    if not secret:
        raise BadSignature("no secret is configured for this webhook")
    if not hmac.compare_digest(presented.encode(), secret.encode()):
        raise BadSignature(f"bad {header}")


def _time(text) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Unleash: event types that change how a flag serves.
UNLEASH_CHANGES = {
    "feature-environment-enabled",
    "feature-environment-disabled",
    "feature-strategy-add",
    "feature-strategy-update",
    "feature-strategy-remove",
    "feature-environment-variants-updated",
    "feature-variants-updated",
    "feature-archived",
    "feature-revived",
    "feature-updated",
}


def unleash_change(body: dict) -> dict | None:
    if body.get("type") not in UNLEASH_CHANGES or not body.get("featureName"):
        return None
    return {
        "flag": str(body["featureName"]),
        "environment": str(body.get("environment") or ""),
        "at": _time(body.get("createdAt")),
        "actor": str(body.get("createdBy") or ""),
        "description": f"Unleash: {body['type']}",
        "rollout": _unleash_rollout(body.get("data")),
    }


def _unleash_rollout(data) -> dict:
    # A gradual rollout strategy carries its percentage as a string parameter.
    parameters = data.get("parameters") if isinstance(data, dict) else None
    if not isinstance(parameters, dict) or parameters.get("rollout") in (None, ""):
        return {}
    percent = float(parameters["rollout"])
    return {"on": percent, "off": 100.0 - percent}


def flagsmith_change(body: dict) -> dict | None:
    if body.get("event_type") not in ("FLAG_UPDATED", "FLAG_DELETED"):
        return None
    data = body.get("data") or {}
    state = data.get("new_state") or data.get("previous_state") or {}
    feature = state.get("feature") or {}
    if not feature.get("name"):
        return None
    enabled = "on" if state.get("enabled") else "off"
    value = state.get("feature_state_value")
    detail = f"{enabled}" + (f", value {value!r}" if value not in (None, "") else "")
    scope = " for a segment" if state.get("feature_segment") else ""
    scope = " for one identity" if state.get("identity_identifier") else scope
    return {
        "flag": str(feature["name"]),
        "environment": str((state.get("environment") or {}).get("name") or ""),
        "at": _time(data.get("timestamp")),
        "actor": str(data.get("changed_by") or ""),
        "description": f"Flagsmith: {body['event_type']} ({detail}){scope}",
        "rollout": _flagsmith_rollout(state),
    }


def _flagsmith_rollout(state: dict) -> dict:
    rollout = {}
    for item in state.get("multivariate_feature_state_values") or []:
        option = item.get("multivariate_feature_option") or {}
        if "percentage_allocation" in item:
            rollout[str(option.get("value"))] = float(item["percentage_allocation"])
    return rollout


def launchdarkly_change(body: dict) -> dict | None:
    if body.get("kind") != "flag":
        return None
    current = body.get("currentVersion") or {}
    resources = [a.get("resource", "") for a in body.get("accesses") or []]
    resources += (body.get("target") or {}).get("resources") or []
    flag, environment = current.get("key"), ""
    for resource in resources:
        # proj/<project>:env/<environment>:flag/<key>
        parts = dict(p.split("/", 1) for p in resource.split(":") if "/" in p)
        flag = flag or parts.get("flag")
        environment = environment or parts.get("env", "")
    if not flag:
        return None
    member = body.get("member") or {}
    date = body.get("date")
    return {
        "flag": str(flag),
        "environment": environment,
        "at": datetime.fromtimestamp(date / 1000, tz=UTC) if date else None,
        "actor": str(member.get("email") or ""),
        "description": f"LaunchDarkly: {body.get('titleVerb') or body.get('description') or ''}",
        "rollout": _launchdarkly_rollout(current, environment),
    }


def _launchdarkly_rollout(current: dict, environment: str) -> dict:
    variations = current.get("variations") or []
    settings = (current.get("environments") or {}).get(environment) or {}
    rollout = ((settings.get("fallthrough") or {}).get("rollout") or {}).get("variations") or []
    shares = {}
    for item in rollout:
        index = item.get("variation")
        if isinstance(index, int) and 0 <= index < len(variations):
            variation = variations[index]
            name = variation.get("name") or str(variation.get("value"))
            # Weights are in thousandths of a percent.
            shares[name] = item.get("weight", 0) / 1000
    return shares
