"""Login throttling on the dashboard's and the admin's login, and CSRF on every form."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from telemetry.models import RateBucket
from tests.security.conftest import PASSWORD

LOGIN_URLS = ["/login/", "/admin/login/"]


@pytest.fixture
def strict(settings):
    settings.MONOENV_LOGIN_FAILURES_PER_USER = 3
    settings.MONOENV_LOGIN_FAILURES_PER_ADDRESS = 5
    settings.MONOENV_LOGIN_WINDOW_SECONDS = 300


def log_in(client, url: str, username: str, password: str, **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def is_logged_in(response) -> bool:
    return response.status_code == 302


@pytest.mark.parametrize("url", LOGIN_URLS)
def test_it_refuses_even_the_right_password_after_failures(client, admin_user, strict, url):
    for _ in range(3):
        assert not is_logged_in(log_in(client, url, "root", "wrong"))

    response = log_in(client, url, "root", PASSWORD)

    assert not is_logged_in(response)
    assert "Too many failed logins" in response.content.decode()
    assert "Try again in 100 seconds" in response.content.decode()


def test_the_dashboard_login_shows_the_ordinary_error_before_the_limit(client, viewer, strict):
    response = log_in(client, "/login/", "viewer", "wrong")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_other_usernames_are_not_locked_out(client, viewer, admin_user, strict):
    for _ in range(3):
        log_in(client, "/login/", "root", "wrong")

    assert is_logged_in(log_in(client, "/login/", "viewer", PASSWORD))


def test_usernames_are_throttled_whatever_their_case(client, admin_user, strict):
    for name in ("root", "ROOT", "Root"):
        log_in(client, "/login/", name, "wrong")

    assert not is_logged_in(log_in(client, "/login/", "root", PASSWORD))


def test_one_address_guessing_many_usernames_is_throttled(client, viewer, strict):
    for number in range(5):
        log_in(client, "/login/", f"user{number}", "wrong")

    response = log_in(client, "/login/", "viewer", PASSWORD)

    assert not is_logged_in(response)
    assert "Too many failed logins" in response.content.decode()
    other_address = log_in(client, "/login/", "viewer", PASSWORD, REMOTE_ADDR="10.0.0.9")
    assert is_logged_in(other_address)


def test_an_attempt_is_allowed_again_once_the_bucket_refills(client, viewer, strict):
    for _ in range(3):
        log_in(client, "/login/", "viewer", "wrong")
    # 300 s for 3 failures: one more attempt every 100 s.
    for bucket in RateBucket.objects.all():
        bucket.updated_at -= timedelta(seconds=101)
        bucket.save()

    assert is_logged_in(log_in(client, "/login/", "viewer", PASSWORD))


def test_successful_logins_are_not_counted(client, viewer, strict):
    for _ in range(6):
        assert is_logged_in(log_in(client, "/login/", "viewer", PASSWORD))
        client.logout()

    assert not RateBucket.objects.exists()


def test_forwarded_addresses_count_only_behind_a_trusted_proxy(client, db, strict, settings):
    def fail_from(forwarded_for: str) -> set[str]:
        log_in(client, "/login/", "nobody", "wrong", HTTP_X_FORWARDED_FOR=forwarded_for)
        keys = set(RateBucket.objects.filter(key__startswith="login-addr:").values_list("key"))
        RateBucket.objects.all().delete()
        return {key for (key,) in keys}

    # Without a trusted proxy the header is only the client's word: REMOTE_ADDR counts.
    assert fail_from("10.0.0.1, 192.0.2.1") == {"login-addr:127.0.0.1"}
    settings.MONOENV_TRUSTED_PROXIES = 1
    # Behind one proxy, the address it appended counts, not what the client sent before it.
    assert fail_from("10.0.0.1, 192.0.2.1") == {"login-addr:192.0.2.1"}


@pytest.mark.parametrize("url", LOGIN_URLS)
def test_a_login_without_the_csrf_token_is_refused(viewer, url):
    client = Client(enforce_csrf_checks=True)

    response = log_in(client, url, "viewer", PASSWORD)

    assert response.status_code == 403
    assert "CSRF" in response.content.decode()


def test_a_login_with_the_csrf_token_works(viewer):
    client = Client(enforce_csrf_checks=True)
    client.get("/login/")
    token = client.cookies[django_settings.CSRF_COOKIE_NAME].value

    response = client.post(
        "/login/", {"username": "viewer", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )

    assert is_logged_in(response)


def test_logout_needs_the_csrf_token(viewer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer)

    assert client.post("/logout/").status_code == 403


def test_the_csrf_middleware_is_on():
    assert "django.middleware.csrf.CsrfViewMiddleware" in django_settings.MIDDLEWARE


def _views(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _views(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern.callback


def test_only_token_authenticated_views_skip_csrf():
    exempt = {route for route, view in _views(get_resolver()) if getattr(view, "csrf_exempt", 0)}

    # The OTLP receiver and the API authenticate by bearer token (or the GitHub
    # webhook's HMAC), never by the session cookie, so a forged request has no credential.
    otlp = {"v1/traces", "v1/metrics", "v1/logs"}
    assert exempt - otlp == {route for route in exempt if route.startswith("api/v1/")}
    assert otlp <= exempt
