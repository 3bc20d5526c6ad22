"""When the launcher streams the demo: the embedded default only, unless MONOENV_DEMO says."""

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from monoenv_site import launcher
from tests.slo.factories import store_spans

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now() - timedelta(minutes=5)


@pytest.fixture(autouse=True)
def _no_demo_variable(monkeypatch):
    monkeypatch.delenv("MONOENV_DEMO", raising=False)


def test_a_fresh_embedded_install_gets_the_demo():
    assert launcher.wants_demo(embedded_database=True) is True


def test_a_database_named_by_database_url_never_gets_it_by_default():
    assert launcher.wants_demo(embedded_database=False) is False


def test_monoenv_demo_1_asks_for_it_even_with_database_url(monkeypatch):
    monkeypatch.setenv("MONOENV_DEMO", "1")

    assert launcher.wants_demo(embedded_database=False) is True


def test_monoenv_demo_0_turns_it_off(monkeypatch):
    monkeypatch.setenv("MONOENV_DEMO", "0")

    assert launcher.wants_demo(embedded_database=True) is False


def test_the_demo_goes_on_while_only_demo_services_have_sent_spans(now):
    store_spans(now, 3, service="demo-checkout")

    assert launcher.wants_demo(embedded_database=True) is True


def test_the_demo_stops_once_a_service_of_ones_own_sends_spans(now):
    store_spans(now, 3, service="demo-checkout")
    store_spans(now, 3, service="shop")

    assert launcher.wants_demo(embedded_database=True) is False


def test_a_mistyped_monoenv_demo_is_refused(monkeypatch):
    monkeypatch.setenv("MONOENV_DEMO", "ture")

    with pytest.raises(ImproperlyConfigured, match="MONOENV_DEMO"):
        launcher.wants_demo(embedded_database=True)
