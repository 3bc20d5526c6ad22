import json
import threading
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dj_database_url
import pytest
from django.core.cache import cache
from django.utils import timezone

from monoenv_site import embedded
from telemetry import auth, ingest, partitions
from telemetry.models import ApiToken


def pytest_configure(config):
    """On the embedded default, find or start the tests' PostgreSQL before any test.

    Settings only computed where it will listen; `make test` stops it afterwards.
    """
    from django.conf import settings

    url = embedded.prepare()
    if url:
        # Settings predicted the socket folder before the server existed; trust the server.
        found = dj_database_url.parse(url)
        settings.DATABASES["default"].update(HOST=found["HOST"], OPTIONS=found["OPTIONS"])


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items):
    """The tests marked `slow` first, longest first; the rest as pytest-django ordered them.

    They take minutes of real time (a database outage, a whole stack booted).
    `make test` hands tests to its parallel workers in this order, so each
    slow one starts early on a worker of its own while the others run the
    rest, instead of a long one left alone at the end.
    """
    result = yield
    items.sort(key=_minutes_first)
    return result


def _minutes_first(item) -> float:
    marker = item.get_closest_marker("slow")
    return -marker.args[0] if marker else 0


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's loadgroup scheduler, able to tell apart tests that share a node id.

    schemathesis gives the test of each API operation the same id, and
    xdist's scope schedulers key tests by id: they would run only the first
    of them and report the rest as never collected, with no error.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class DistinctIds(LoadGroupScheduling):
        def add_node_collection(self, node, collection):
            super().add_node_collection(node, _distinct(collection))

    return DistinctIds(config, log)


def _distinct(nodeids) -> list[str]:
    """The ids in order, a repeated one numbered from its second time on."""
    seen = Counter()
    distinct = []
    for nodeid in nodeids:
        seen[nodeid] += 1
        distinct.append(nodeid if seen[nodeid] == 1 else f"{nodeid}#{seen[nodeid]}")
    return distinct


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Superusers for admin tests need a password; the real hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _own_spool(settings, tmp_path):
    """Each test spools into its own folder, and replays only when it says so.

    A background replayer would write outside the test's transaction.
    """
    settings.MONOENV_SPOOL_DIR = tmp_path / "spool"
    settings.MONOENV_SPOOL_BACKGROUND_REPLAY = False
    ingest._outage_until = 0.0
    auth.forget_confirmations()


@pytest.fixture(autouse=True)
def _fresh_process_state(request, django_db_blocker):
    """No cached partitions, ingest slots or cache entries carry from test to test.

    Partitions made inside a rolled-back test are gone, so the cache of known
    ones is dropped. Transactional tests commit their spans, and their flush
    skips the unmanaged (partitioned) span table, so its partitions are dropped.
    """
    partitions.forget_partitions()
    ingest._slots = None
    cache.clear()
    yield
    ingest._slots = None
    if {"transactional_db", "live_server"} & set(request.fixturenames):
        with django_db_blocker.unblock():
            partitions.drop_partitions_before(timezone.now() + timedelta(days=400))
    partitions.forget_partitions()


@pytest.fixture
def make_token(db):
    """Issues a token with the given scopes and returns its raw value."""

    def make(*scopes: str, name: str = "test") -> str:
        return ApiToken.issue(name=name, scopes=list(scopes))[1]

    return make


class _WebhookReceiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.raw.append(body)
        self.server.received.append(json.loads(body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    """A real HTTP server on a free port, standing in for a webhook target.

    `.received` holds the parsed JSON bodies, `.raw` the bytes as they came;
    set `.statuses` to answer with those first, then 200.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    server.received, server.raw, server.statuses = [], [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield server
    server.shutdown()
    server.server_close()


# The named roles' tokens, one scope each; tests that need another mix call make_token.
@pytest.fixture
def ingest_token(make_token) -> str:
    return make_token("ingest", name="ingest")


@pytest.fixture
def read_token(make_token) -> str:
    return make_token("read", name="reader")


@pytest.fixture
def deploy_token(make_token) -> str:
    return make_token("deploy", name="deployer")


@pytest.fixture
def incident_token(make_token) -> str:
    return make_token("incident", name="on-call bot")
