"""flags/control.py: which cohort is the control, in the issue's order."""

from flags.control import choose_control


def choose(cohorts, before=None, defaults=None, override=""):
    return choose_control(cohorts=set(cohorts), before=before or {}, defaults=defaults or {},
                          override=override)  # fmt: skip


def test_a_variant_named_control_off_or_false_comes_first():
    assert choose({"on", "control", "off"}, {"on": 90}).cohort == "control"
    assert choose({"on", "Off"}, {"on": 90}, {"on": 5}).cohort == "Off"
    assert choose({"true", "false"}, {"true": 99}).cohort == "false"


def test_else_the_default_variant():
    chosen = choose({"blue", "green", "red"}, {"green": 80}, {"blue": 40, "red": 3})
    assert chosen.cohort == "blue"
    assert chosen.reason == "the flag's default variant (reason 'default')"


def test_else_the_largest_cohort_before_the_change():
    chosen = choose({"blue", "green"}, {"blue": 10, "green": 80})
    assert (chosen.cohort, chosen.reason) == ("green", "the largest cohort before the change")


def test_an_override_wins():
    assert choose({"on", "off"}, {"off": 90}, override="on").cohort == "on"


def test_an_error_cohort_is_never_the_control():
    chosen = choose({"error:general", "v2"}, {"error:general": 500, "v2": 3},
                    {"error:general": 500})  # fmt: skip
    assert chosen.cohort == "v2"


def test_ties_go_to_the_first_name():
    assert choose({"b", "a"}, {"a": 5, "b": 5}).cohort == "a"


def test_nothing_to_choose_from():
    assert choose(set()).cohort == ""
