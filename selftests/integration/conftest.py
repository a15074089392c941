"""Fixtures: Python backends on free ports and sluiced daemons started on configs written
for the test. Teardown stops every daemon (SIGTERM, exit 0 expected) and fails the test on
a hang, a bad exit status or a sanitizer report in its stderr."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backends import Backend, Blackhole, free_port  # noqa: E402
from daemon import Sluice, base_config, servers_of  # noqa: E402


class SluiceFactory:
    def __init__(self, tmp_path):
        self.dir = str(tmp_path)
        self.instances = []

    def new(self, name=None):
        """An unstarted Sluice (write_config / start yourself)."""
        s = Sluice(self.dir, name or "sluice%d" % len(self.instances))
        self.instances.append(s)
        return s

    def config(self, routes, upstreams=None, port=None, host="127.0.0.1", name=None, sl=None,
               **kw):
        """A config dict for a new listener port (or `port`). sl=: a config for that
        daemon (its log file names, and its listener port once it has one)."""
        if sl is not None:
            name = sl.name
            if sl.listen and port is None:
                host, port = sl.listen[0]
        name = name or "sluice%d" % len(self.instances)
        port = port or free_port(host)
        return base_config(port, routes, upstreams, host=host,
                           access_log=os.path.join(self.dir, name + ".access.log"), **kw)

    def start(self, routes, upstreams=None, **kw):
        s = self.new()
        return s.start(self.config(routes, upstreams, sl=s, **kw))

    def proxy_config(self, *backends, upstream=None, **kw):
        """Everything to one upstream "u" with these servers; upstream= extra keys."""
        u = {"servers": servers_of(backends)}
        u.update(upstream or {})
        return self.config([{"upstream": "u"}], {"u": u}, **kw)

    def proxy(self, *backends, upstream=None, **kw):
        s = self.new()
        return s.start(self.proxy_config(*backends, upstream=upstream, sl=s, **kw))


@pytest.fixture
def backend():
    """backend(name=None, handler=None, host=..., idle_close=...) -> a running Backend."""
    made = []

    def make(name=None, handler=None, **kw):
        b = Backend(name, handler, **kw)
        made.append(b)
        return b

    yield make
    errors = []
    for b in made:
        b.stop()
        errors += b.errors
    if errors:
        pytest.fail("backend handler raised: %r" % errors)


@pytest.fixture
def sluice(tmp_path, backend):
    """Factory of sluiced daemons (stopped before the backends at teardown)."""
    f = SluiceFactory(tmp_path)
    yield f
    problems = []
    for s in f.instances:
        for p in s.stop():
            problems.append("%s: %s\n--- stderr tail ---\n%s" % (s.describe(), p,
                                                                 s.stderr()[-3000:]))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def blackhole():
    made = []

    def make():
        b = Blackhole()
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
