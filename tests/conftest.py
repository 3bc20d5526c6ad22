import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Superusers for admin tests need a password; the real hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
