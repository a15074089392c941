"""sluicectl drives the daemon through its admin socket and never signals a process it did
not verify is a sluiced; reload reports the daemon's verdict (exit 1 with FILE:LINE:COL on
a rejected file); SIGUSR1 / reopen-logs reopen the error and access logs after rotation."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from daemon import wait_for
from env import BUILD, SCALE
from test_admin import admin, sock_path

CTL = os.path.join(BUILD, "sluicectl")


def ctl(*args, timeout=None):
    return subprocess.run([CTL] + list(args), capture_output=True, text=True,
                          timeout=timeout or 20 * SCALE, stdin=subprocess.DEVNULL)


def respond(body):
    return [{"respond": {"status": 200, "body": body}}]


def with_admin(sluice, tmp_path, body="one\n", **kw):
    path = sock_path(tmp_path)
    sl = sluice.new()
    sl.start(sluice.config(respond(body), sl=sl, admin={"socket": path}, **kw))
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    return sl, path


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "600"])
    yield p
    p.kill()
    p.wait()


# ---- hostile: never signal what is not a sluiced ---------------------------------

def test_reload_pid_of_a_non_sluice_process_is_refused(sleeper):
    r = ctl("--socket", "/nonexistent/admin.sock", "reload", "--pid", str(sleeper.pid))
    assert r.returncode == 1, r
    assert "pid %d is not a sluiced" % sleeper.pid in r.stderr, r.stderr
    time.sleep(0.2)
    assert sleeper.poll() is None, "sluicectl signalled a sleep process"


def test_reopen_logs_pid_of_a_non_sluice_process_is_refused(sleeper):
    r = ctl("reopen-logs", "--pid", str(sleeper.pid))
    assert r.returncode == 1, r
    time.sleep(0.2)
    assert sleeper.poll() is None


@pytest.mark.parametrize("bad", ["10731abc", "-5", "+5", " 5", "5 ", "", "0", "1", "0x10",
                                 "99999999999999999999", "1e3"])
def test_reload_pid_must_be_plain_digits(bad, sleeper):
    r = ctl("reload", "--pid", bad)
    assert r.returncode == 2, (bad, r)
    assert "--pid" in r.stderr and "not a process id" in r.stderr, r.stderr
    assert sleeper.poll() is None


def test_reload_pid_with_trailing_junk_of_a_live_sluiced(sluice):
    sl = sluice.start(respond("one\n"))
    r = ctl("reload", "--pid", "%dabc" % sl.pid)
    assert r.returncode == 2, r
    assert "config reloaded" not in sl.stderr()


def test_reload_pid_of_a_gone_process():
    p = subprocess.Popen(["true"])
    p.wait()
    r = ctl("reload", "--pid", str(p.pid))
    assert r.returncode == 1, r
    assert "no such process" in r.stderr or "not a sluiced" in r.stderr, r.stderr


def test_reload_without_socket_or_pid_signals_nobody(sluice):
    sl = sluice.start(respond("one\n"))
    r = ctl("--socket", os.path.join(sluice.dir, "none.sock"), "reload")
    assert r.returncode == 1, r
    time.sleep(0.3)
    assert "config reloaded" not in sl.stderr(), "a daemon was signalled"
    assert sl.running()


def test_reload_pid_must_match_the_admin_socket(sluice, tmp_path):
    a, path = with_admin(sluice, tmp_path)
    b = sluice.start(respond("b\n"))
    r = ctl("--socket", path, "reload", "--pid", str(b.pid))
    assert r.returncode == 1, r
    assert "belongs to pid %d, not %d" % (a.pid, b.pid) in r.stderr, r.stderr
    time.sleep(0.3)
    assert "config reloaded" not in a.stderr() + b.stderr()


# ---- the outcome of a reload -----------------------------------------------------

def test_reload_of_a_bad_file_exits_1_with_the_reason(sluice, tmp_path):
    sl, path = with_admin(sluice, tmp_path)
    good = open(sl.config_path).read()
    with open(sl.config_path, "w") as f:
        f.write(good + "bogus_key: 1\n")
    r = ctl("--socket", path, "reload")
    assert r.returncode == 1, r
    assert re.search(re.escape(sl.config_path) + r":\d+:\d+", r.stderr), r.stderr
    assert "rejected" in r.stderr
    # the old config keeps serving
    assert sl.client().request("GET", "/").body == b"one\n"


def test_reload_of_a_good_file_exits_0(sluice, tmp_path):
    sl, path = with_admin(sluice, tmp_path)
    cfg = dict(sl.config)
    cfg["listeners"] = [dict(cfg["listeners"][0], routes=respond("two\n"))]
    sl.write_config(cfg)
    r = ctl("--socket", path, "reload")
    assert r.returncode == 0, r
    assert "config reloaded: pid %d" % sl.pid in r.stdout
    assert sl.client().request("GET", "/").body == b"two\n"


def test_reload_finds_the_socket_through_the_config(sluice, tmp_path):
    sl, path = with_admin(sluice, tmp_path)
    r = ctl("--config", sl.config_path, "reload", "--pid", str(sl.pid))
    assert r.returncode == 0, r
    assert admin(path, "GET", "/status").json()["reloads"] == 1


def test_reload_pid_without_admin_socket_sends_sighup_to_a_verified_sluiced(sluice):
    sl = sluice.start(respond("one\n"))
    r = ctl("--socket", os.path.join(sluice.dir, "none.sock"), "reload", "--pid", str(sl.pid))
    assert r.returncode == 0, r
    assert sl.wait_log(lambda ln: "config reloaded" in ln), sl.stderr()


# ---- SIGUSR1: reopen the logs ----------------------------------------------------

def logs_config(sluice, sl, logdir, **kw):
    return sluice.config(respond("one\n"), sl=sl, log={
        "level": "info", "error_log": os.path.join(logdir, "error.log"),
        "access_log": os.path.join(logdir, "access.log")}, **kw)


def read(p):
    try:
        with open(p) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test_sigusr1_reopens_logs_after_rename(sluice, tmp_path):
    logdir = str(tmp_path / "logs")
    os.mkdir(logdir)
    sl = sluice.new()
    sl.start(logs_config(sluice, sl, logdir))
    acc, err = os.path.join(logdir, "access.log"), os.path.join(logdir, "error.log")
    sl.client().request("GET", "/before")
    assert wait_for(lambda: "/before" in read(acc), 5 * SCALE)
    os.rename(acc, acc + ".1")
    os.rename(err, err + ".1")
    sl.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(acc) and os.path.exists(err), 5 * SCALE), \
        os.listdir(logdir)
    assert wait_for(lambda: "log files reopened" in read(err), 5 * SCALE)
    sl.client().request("GET", "/after")
    assert wait_for(lambda: "/after" in read(acc), 5 * SCALE)
    assert "/after" not in read(acc + ".1")
    assert "/before" not in read(acc)
    assert sl.running()


def test_sigusr1_with_the_log_directory_removed(sluice, tmp_path):
    logdir = str(tmp_path / "logs")
    os.mkdir(logdir)
    sl = sluice.new()
    sl.start(logs_config(sluice, sl, logdir))
    shutil.rmtree(logdir)
    sl.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    assert sl.running(), "SIGUSR1 with the log directory gone killed the daemon"
    assert sl.client().request("GET", "/still").body == b"one\n"
    # once the directory is back the next reopen works
    os.mkdir(logdir)
    sl.send_signal(signal.SIGUSR1)
    acc = os.path.join(logdir, "access.log")
    assert wait_for(lambda: os.path.exists(acc), 5 * SCALE)
    sl.client().request("GET", "/back")
    assert wait_for(lambda: "/back" in read(acc), 5 * SCALE)


def test_reopen_logs_reports_failure(sluice, tmp_path):
    logdir = str(tmp_path / "logs")
    os.mkdir(logdir)
    path = sock_path(tmp_path)
    sl = sluice.new()
    sl.start(logs_config(sluice, sl, logdir, admin={"socket": path}))
    assert wait_for(lambda: os.path.exists(path), 5 * SCALE)
    r = ctl("--socket", path, "reopen-logs")
    assert r.returncode == 0, r
    shutil.rmtree(logdir)
    r = ctl("--socket", path, "reopen-logs")
    assert r.returncode == 1, r
    assert "No such file or directory" in r.stderr, r.stderr
    assert sl.running()


def test_sigusr1_with_stderr_logs_keeps_running(sluice):
    sl = sluice.start(respond("one\n"))
    sl.send_signal(signal.SIGUSR1)
    assert sl.wait_log(lambda ln: "log files reopened" in ln), sl.stderr()
    assert sl.client().request("GET", "/").body == b"one\n"
