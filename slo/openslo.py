"""OpenSLO v1 documents to and from SLO definitions.

Pure code with no Django imports. A definition is a dict of the SLO model's
fields, with `span_kind` as a name ("server"), `objective`, `threshold_ms` and
`timeslice_target` as Decimals, and percentages where the model has them.
Anything Monoenv cannot represent raises OpenSLOError naming the field.
"""

import re
from decimal import Decimal, InvalidOperation

import yaml

API_VERSION = "openslo/v1"
METRIC_SOURCE = "monoenv"
IGNORED_KINDS = ("Service",)
_OPENSLO_DURATION = re.compile(r"^([1-9][0-9]*)([mhdwMQY])$")


class OpenSLOError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def load_yaml(text: str) -> list[dict]:
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise OpenSLOError("document", f"not valid YAML ({exc})") from None
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise OpenSLOError(f"documents[{index}]", "each document must be a mapping")
    return documents


def dump_yaml(documents: list[dict]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)


def parse(documents: list[dict]) -> list[dict]:
    """SLO definitions from OpenSLO documents; SLIs may be inline or separate."""
    slis = {}
    for index, document in enumerate(documents):
        path = f"documents[{index}]"
        if document.get("apiVersion") != API_VERSION:
            raise OpenSLOError(f"{path}.apiVersion", f"must be {API_VERSION!r}")
        kind = document.get("kind")
        if kind not in ("SLO", "SLI", *IGNORED_KINDS):
            raise OpenSLOError(f"{path}.kind", f"{kind!r} is not supported (SLO or SLI only)")
        if kind == "SLI":
            slis[_name(document, path)] = (document, path)
    return [
        _slo_definition(document, f"documents[{index}]", slis)
        for index, document in enumerate(documents)
        if document.get("kind") == "SLO"
    ]


def _name(document: dict, path: str) -> str:
    name = _get(document, "metadata", path).get("name")
    if not isinstance(name, str) or not name:
        raise OpenSLOError(f"{path}.metadata.name", "is required")
    return name


def _get(mapping: dict, key: str, path: str, *, required: bool = True):
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if value is None and required:
        raise OpenSLOError(f"{path}.{key}", "is required")
    return value


def _slo_definition(document: dict, path: str, slis: dict) -> dict:
    spec = _get(document, "spec", path)
    spec_path = f"{path}.spec"
    objective = _objective(spec, spec_path)
    indicator, indicator_path = _indicator(spec, spec_path, slis)
    definition = {
        "name": _name(document, path),
        "display_name": str(document["metadata"].get("displayName") or ""),
        "service": str(_get(spec, "service", spec_path)),
        **_window(spec, spec_path),
        **_budgeting(spec, objective, spec_path),
        "objective": _percent(objective, f"{spec_path}.objectives[0]"),
    }
    definition.update(_selection(indicator, indicator_path, objective, spec_path))
    if not definition["service"]:
        raise OpenSLOError(f"{spec_path}.service", "is required")
    return definition


def _objective(spec: dict, path: str) -> dict:
    objectives = _get(spec, "objectives", path)
    if not isinstance(objectives, list) or len(objectives) != 1:
        raise OpenSLOError(f"{path}.objectives", "exactly one objective is supported")
    objective = objectives[0]
    for composite_key in ("compositeWeight", "indicator", "indicatorRef"):
        if isinstance(objective, dict) and composite_key in objective:
            raise OpenSLOError(
                f"{path}.objectives[0].{composite_key}", "composite SLOs are not supported"
            )
    if not isinstance(objective, dict):
        raise OpenSLOError(f"{path}.objectives[0]", "must be a mapping")
    return objective


def _percent(objective: dict, path: str) -> Decimal:
    if "targetPercent" in objective:
        return _decimal(objective["targetPercent"], f"{path}.targetPercent")
    return _decimal(_get(objective, "target", path), f"{path}.target") * 100


def _decimal(value, path: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise OpenSLOError(path, f"{value!r} is not a number") from None
    if not number.is_finite():
        raise OpenSLOError(path, f"{value!r} is not a number")
    return number


def _indicator(spec: dict, path: str, slis: dict) -> tuple[dict, str]:
    if "indicator" in spec:
        return _get(spec, "indicator", path), f"{path}.indicator"
    ref = _get(spec, "indicatorRef", path)
    if ref not in slis:
        raise OpenSLOError(f"{path}.indicatorRef", f"no kind: SLI document named {ref!r}")
    document, sli_path = slis[ref]
    return document, sli_path


def _window(spec: dict, path: str) -> dict:
    windows = _get(spec, "timeWindow", path)
    if not isinstance(windows, list) or len(windows) != 1:
        raise OpenSLOError(f"{path}.timeWindow", "exactly one time window is supported")
    window, window_path = windows[0], f"{path}.timeWindow[0]"
    duration = str(_get(window, "duration", window_path))
    match = _OPENSLO_DURATION.match(duration)
    if not match:
        raise OpenSLOError(f"{window_path}.duration", f"{duration!r} is not a duration")
    count, unit = int(match[1]), match[2]
    calendar = window.get("calendar")
    if calendar or window.get("isRolling") is False:
        calendar_units = {(1, "M"): "month", (1, "w"): "week"}
        if (count, unit) not in calendar_units:
            raise OpenSLOError(f"{window_path}.duration", "calendar windows must be '1M' or '1w'")
        zone = str((calendar or {}).get("timeZone") or "UTC")
        return {"window": calendar_units[(count, unit)], "timezone": zone}
    rolling = {"h": f"{count}h", "d": f"{count}d", "w": f"{count * 7}d"}
    if unit not in rolling:
        raise OpenSLOError(f"{window_path}.duration", "rolling windows are counted in h, d or w")
    return {"window": rolling[unit], "timezone": "UTC"}


def _budgeting(spec: dict, objective: dict, path: str) -> dict:
    method = spec.get("budgetingMethod", "Occurrences")
    if method == "Occurrences":
        return {"budgeting": "occurrences", "timeslice_target": None}
    if method != "Timeslices":
        raise OpenSLOError(
            f"{path}.budgetingMethod", f"{method!r} is not supported (Occurrences or Timeslices)"
        )
    slice_window = str(objective.get("timeSliceWindow", "1m"))
    if slice_window not in ("1m", "60s"):
        raise OpenSLOError(
            f"{path}.objectives[0].timeSliceWindow", "time slices are one minute ('1m')"
        )
    target_path = f"{path}.objectives[0].timeSliceTarget"
    target = _decimal(_get(objective, "timeSliceTarget", f"{path}.objectives[0]"), target_path)
    return {"budgeting": "timeslices", "timeslice_target": target * 100}


def _selection(indicator: dict, path: str, objective: dict, slo_path: str) -> dict:
    spec = _get(indicator, "spec", path)
    spec_path = f"{path}.spec"
    if "ratioMetric" in spec:
        return _ratio_selection(spec["ratioMetric"], f"{spec_path}.ratioMetric")
    if "thresholdMetric" in spec:
        return _threshold_selection(
            spec["thresholdMetric"], f"{spec_path}.thresholdMetric", objective, slo_path
        )
    raise OpenSLOError(spec_path, "needs ratioMetric or thresholdMetric")


def _source(metric: dict, path: str) -> dict:
    source = _get(metric, "metricSource", path)
    source_path = f"{path}.metricSource"
    source_type = _get(source, "type", source_path)
    if source_type != METRIC_SOURCE:
        raise OpenSLOError(
            f"{source_path}.type",
            f"metric source {source_type!r} is not supported; Monoenv reads {METRIC_SOURCE!r}",
        )
    return _get(source, "spec", source_path)


def _ratio_selection(ratio: dict, path: str) -> dict:
    counted = "good" if "good" in (ratio or {}) else "bad"
    source = _source(_get(ratio, counted, path), f"{path}.{counted}")
    source_path = f"{path}.{counted}.metricSource.spec"
    selection = _common_selection(source, source_path)
    sli = source.get("sli", "availability")
    if counted == "bad" and sli != "availability":
        raise OpenSLOError(f"{source_path}.sli", "a 'bad' ratio counts errors (availability)")
    if sli == "latency":
        threshold = _decimal(_get(source, "thresholdMs", source_path), f"{source_path}.thresholdMs")
        selection.update(sli="latency", threshold_ms=threshold)
    elif sli != "availability":
        raise OpenSLOError(f"{source_path}.sli", "must be 'availability' or 'latency'")
    _source(_get(ratio, "total", path), f"{path}.total")
    return selection


def _threshold_selection(metric: dict, path: str, objective: dict, slo_path: str) -> dict:
    source = _source(metric, path)
    source_path = f"{path}.metricSource.spec"
    selection = _common_selection(source, source_path)
    if "value" in objective:
        op = objective.get("op", "lte")
        if op != "lte":
            raise OpenSLOError(
                f"{slo_path}.objectives[0].op", f"{op!r} is not supported; use 'lte'"
            )
        threshold = _decimal(objective["value"], f"{slo_path}.objectives[0].value")
    else:
        threshold = _decimal(_get(source, "thresholdMs", source_path), f"{source_path}.thresholdMs")
    selection.update(sli="latency", threshold_ms=threshold)
    return selection


def _common_selection(source: dict, path: str) -> dict:
    selection = {
        "route": str(source.get("route") or ""),
        "span_kind": str(source.get("spanKind") or "server"),
        "sli": "availability",
        "threshold_ms": None,
        "latency_requires_success": bool(source.get("requireSuccess", False)),
    }
    if source.get("service"):
        selection["service"] = str(source["service"])
    return selection


def to_document(definition: dict) -> dict:
    """One self-contained kind: SLO document, with its indicator inline."""
    source_spec = {"service": definition["service"], "spanKind": definition["span_kind"]}
    if definition["route"]:
        source_spec["route"] = definition["route"]
    objective: dict = {"target": _number(definition["objective"] / 100)}
    if definition["sli"] == "latency":
        source_spec["requireSuccess"] = bool(definition["latency_requires_success"])
        indicator_spec = {
            "thresholdMetric": {"metricSource": {"type": METRIC_SOURCE, "spec": source_spec}}
        }
        objective.update(op="lte", value=_number(definition["threshold_ms"]))
    else:
        good_spec = {**source_spec, "sli": "availability"}
        indicator_spec = {
            "ratioMetric": {
                "counter": True,
                "good": {"metricSource": {"type": METRIC_SOURCE, "spec": good_spec}},
                "total": {"metricSource": {"type": METRIC_SOURCE, "spec": source_spec}},
            }
        }
    if definition["budgeting"] == "timeslices":
        objective["timeSliceTarget"] = _number(definition["timeslice_target"] / 100)
        objective["timeSliceWindow"] = "1m"
    spec = {
        "service": definition["service"],
        "indicator": {"metadata": {"name": f"{definition['name']}-sli"}, "spec": indicator_spec},
        "timeWindow": [_time_window(definition)],
        "budgetingMethod": definition["budgeting"].capitalize(),
        "objectives": [objective],
    }
    metadata = {"name": definition["name"]}
    if definition["display_name"]:
        metadata["displayName"] = definition["display_name"]
    return {"apiVersion": API_VERSION, "kind": "SLO", "metadata": metadata, "spec": spec}


def _time_window(definition: dict) -> dict:
    window = definition["window"]
    if window in ("month", "week"):
        return {
            "duration": "1M" if window == "month" else "1w",
            # Monoenv aligns to local calendar months and ISO weeks (from Monday).
            "calendar": {
                "startTime": "2020-01-01 00:00:00" if window == "month" else "2020-01-06 00:00:00",
                "timeZone": definition["timezone"],
            },
            "isRolling": False,
        }
    return {"duration": window, "isRolling": True}


def _number(value: Decimal) -> int | float:
    """Plain YAML numbers: 300 rather than 300.000, 0.999 rather than 0.99900."""
    normalized = Decimal(value).normalize()
    return int(normalized) if normalized == normalized.to_integral_value() else float(normalized)
