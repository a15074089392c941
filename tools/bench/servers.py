"""The servers of the benchmark: the backend nginx and the three proxies under test.

Each start function writes its configuration into the run's private directory, starts
the server in the foreground as a procs.Child and waits until a GET through it answers
200. It returns the Child and the port the proxy listens on, or raises StartError.

Proxy start functions take (lab, tag, workers, backends, opts):
  lab       the Lab (binaries, temp dir, fd limit)
  tag       unique name for this run's files, e.g. "nginx-close-2w-r1"
  workers   worker processes (nginx), threads (HAProxy nbthread), sluice `workers`
  backends  list of Backend the proxy balances over
  opts      scenario options (dict); keys used here:
              sluice_keepalive   sluice upstream `keepalive` (default SLUICE_KEEPALIVE)
              sluice_pool_yaml   sluice upstream `pool:` value (flow mapping, e.g.
                                 "{ max_idle_per_worker: 128 }"), instead of `keepalive`
              sluice_steering    sluice `bpf.steering` (auto, required, off); default
                                 sluiced's own (auto)
              sluice_stall_ms    sluice `bpf.stall_ms` (default sluiced's own, 200)
              sluice_bpf         dict of further `bpf:` keys (e.g. {"locality": "off",
                                 "workers_pin": "false"})
              sluice_admin       True: admin API on a Unix socket with `debug: true`
                                 (child.meta["admin"] is its path)
              sluice_extra_yaml  text appended to the sluice config (top-level keys)
              nginx_keepalive    nginx upstream `keepalive` (default NGINX_KEEPALIVE)
              nginx_reuseport    True: `listen ... reuseport backlog=4096` (one socket
                                 per worker, sluiced's backlog)
              tls                "ec" (ECDSA P-256) or "rsa" (RSA-2048): the proxy's
                                 listener terminates TLS with a certificate made at run
                                 time, the same file for all three proxies; TLS 1.2
                                 and 1.3 offered by all (nginx 1.22 needs
                                 ssl_protocols for 1.3); each one's defaults otherwise
                                 (session tickets on)
              cache              True: every proxy caches what the backend allows, with
                                 equivalent settings (CACHE_* below): sluice a `cache:`
                                 zone and route cache with lock {timeout, age}; nginx
                                 `proxy_cache` with keys_zone on /dev/shm (tmpfs) and
                                 `proxy_cache_lock on` with the same timeout and age;
                                 HAProxy its `cache` section (no lock: it has none)

A backend nginx may listen on several ports (Backend.ports); the proxies balance
round robin over every port of every backend they are given. It also serves
/cache/1k and /cache/100k (static files of 1,024 and 102,400 bytes with
`Cache-Control: max-age=3600`) for the cache scenarios. start_slow_origin() is the
stampede's origin instead (tools/bench/origin.py: 200 ms per answer, requests counted).

Every sluiced gets a private BPF pin directory (bpf.pin_path) under /sys/fs/bpf, so
that a run never touches the pins of a sluiced running outside the benchmark (the
default /sys/fs/bpf/sluice); stop_proxy() removes it, remove_all_pins() at the end
removes any left by an interrupted run. child.meta["pin_path"] is that directory.
"""
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

from procs import Child, StartError, free_port, http_get, wait_http_ready, wait_unix_ready


# Idle upstream connections kept per worker. nginx gets as many as sluice: with
# `keepalive 32` and 50 client connections on one worker, nginx closes and reopens
# ~200 upstream connections per 1000 requests, which costs it ~50% more CPU/request.
SLUICE_KEEPALIVE = 128
NGINX_KEEPALIVE = 128

# The cache scenarios: one zone of this size, objects up to this size, and the cache
# lock's limits (nginx's proxy_cache_lock_timeout / _age defaults, sluice's too).
CACHE_ZONE_MB = 64
CACHE_MAX_OBJECT = 1 << 20
CACHE_LOCK_S = 5
CACHE_OBJECTS = (("1k", 1024), ("100k", 102400))


@dataclass
class Lab:
    tmp: str            # private directory for every config, pid file and log
    nofile: int         # RLIMIT_NOFILE the children inherit
    nginx: str
    haproxy: str
    wrk: str
    sluiced: str
    start_timeout: float = 10.0


@dataclass
class Backend:
    port: int
    status_port: int    # stub_status server of the same nginx
    child: Child
    ports: tuple = ()   # every port it serves on (port first)

    def __post_init__(self):
        if not self.ports:
            self.ports = (self.port,)


def tls_files(lab, kind):
    """(cert, key, cert+key) of a throwaway self-signed certificate of this key kind,
    made once per lab with the openssl CLI (HAProxy's `crt` wants both in one file)."""
    d = os.path.join(lab.tmp, "tls-%s" % kind)
    cert, key, both = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "both.pem"))
    if os.path.exists(both):
        return cert, key, both
    os.makedirs(d, exist_ok=True)
    newkey = (["-newkey", "rsa:2048"] if kind == "rsa"
              else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    try:
        subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key,
                        "-out", cert, "-days", "2", "-subj", "/CN=bench.test",
                        "-addext", "subjectAltName=DNS:bench.test"], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise StartError("cannot make a %s certificate with openssl: %s" % (kind, e))
    with open(both, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return cert, key, both


def backend_ports(backends):
    """Every port of every backend, in order: what the proxies balance over."""
    return [p for b in backends for p in b.ports]


# ---------------------------------------------------------------- nginx (both roles)

_NGINX_TEMP_MODULES = (("client_body", None), ("proxy", "http_proxy"),
                       ("fastcgi", "http_fastcgi"), ("uwsgi", "http_uwsgi"),
                       ("scgi", "http_scgi"))
_nginx_configure = None


def _nginx_temp_paths(lab, prefix):
    """*_temp_path directives pointing into the prefix, for the modules this nginx
    has (so it never writes to /var/lib/nginx)."""
    global _nginx_configure
    if _nginx_configure is None:
        try:
            _nginx_configure = subprocess.run([lab.nginx, "-V"], capture_output=True,
                                              text=True).stderr
        except OSError:
            _nginx_configure = ""
    lines = []
    for name, module in _NGINX_TEMP_MODULES:
        if module and ("--without-%s_module" % module) in _nginx_configure:
            continue
        path = os.path.join(prefix, "temp", name)
        os.makedirs(path, exist_ok=True)
        lines.append("    %s_temp_path %s;" % (name, path))
    return "\n".join(lines)


def nginx_worker_connections(nofile):
    """worker_connections of every nginx here: client and upstream connections of
    one worker, each one fd (worker_rlimit_nofile is the whole limit)."""
    return max(1024, min(10000, nofile // 2))


def _nginx_main(lab, prefix, workers, http_body):
    wc = nginx_worker_connections(lab.nofile)
    return """# generated by tools/bench
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
lock_file {prefix}/nginx.lock;
error_log {prefix}/error.log warn;
events {{
    worker_connections {wc};
}}
http {{
    access_log off;
    keepalive_requests 1000000;
{temp}
{body}
}}
""".format(workers=workers, nofile=lab.nofile, prefix=prefix, wc=wc,
           temp=_nginx_temp_paths(lab, prefix), body=http_body)


def _start_nginx(lab, tag, conf_text, prefix):
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    try:
        return Child(tag, [lab.nginx, "-p", prefix + "/", "-c", conf,
                           "-e", os.path.join(prefix, "error.log")], lab.tmp,
                     stop_signal=signal.SIGTERM)
    except OSError as e:
        raise StartError("cannot run %s: %s" % (lab.nginx, e))


def _prefix(lab, tag):
    d = os.path.join(lab.tmp, tag)
    os.makedirs(d, exist_ok=True)
    return d


def start_backend(lab, index=0, nports=1):
    """One nginx worker answering 200 "hello world\\n" on `nports` ports (one server
    block, a `listen` line each), plus a stub_status server counting them all."""
    tag = "backend%d" % index if nports == 1 else "backend%d-%dports" % (index, nports)
    prefix = _prefix(lab, tag)
    ports = tuple(free_port() for _ in range(nports))
    status_port = free_port()
    listens = "\n".join("        listen 127.0.0.1:%d;" % p for p in ports)
    cache_dir = os.path.join(prefix, "cache")
    os.makedirs(cache_dir, exist_ok=True)
    for name, size in CACHE_OBJECTS:
        with open(os.path.join(cache_dir, name), "wb") as f:
            f.write(bytes((i * 7 + 3) & 0xFF for i in range(size)))
    body = """    server {
%s
        location / { return 200 "hello world\\n"; }
        location /cache/ {
            alias %s/;
            add_header Cache-Control "max-age=3600";
        }
    }
    server {
        listen 127.0.0.1:%d;
        location / { stub_status; }
    }""" % (listens, cache_dir, status_port)
    child = _start_nginx(lab, tag, _nginx_main(lab, prefix, 1, body), prefix)
    try:
        for p in ports:
            wait_http_ready(child, p, lab.start_timeout)
        status, _ = http_get(status_port, "/")
        if status != 200:
            raise StartError("stub_status answers HTTP %d" % status, child.log_tail())
    except BaseException:
        child.stop()
        raise
    return Backend(ports[0], status_port, child, ports)


def start_slow_origin(lab, index=0):
    """The stampede's origin (tools/bench/origin.py): 200 ms per /stampede/ answer,
    requests counted per path (GET /_count?path=P)."""
    tag = "origin%d" % index
    port = free_port()
    try:
        child = Child(tag, [sys.executable, os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "origin.py"), str(port), "0.2", "20000"], lab.tmp,
            stop_signal=signal.SIGTERM)
    except OSError as e:
        raise StartError("cannot run the origin: %s" % e)
    try:
        wait_http_ready(child, port, lab.start_timeout)
    except BaseException:
        child.stop()
        raise
    return Backend(port, port, child)


def _nginx_cache(tag, opts):
    """(http-level lines, location lines) of nginx's cache, or ("", "")."""
    if not opts.get("cache"):
        return "", ""
    # tmpfs: nginx's cache is files; in memory as sluice's is
    path = "/dev/shm/sluice-bench-%d-%s" % (os.getpid(), tag)
    shutil.rmtree(path, ignore_errors=True)
    http = ("    proxy_cache_path %s levels=1:2 keys_zone=z:8m max_size=%dm inactive=1h "
            "use_temp_path=off;" % (path, CACHE_ZONE_MB))
    loc = """            proxy_cache z;
            proxy_cache_lock on;
            proxy_cache_lock_timeout %ds;
            proxy_cache_lock_age %ds;
            proxy_buffers 16 16k;""" % (CACHE_LOCK_S, CACHE_LOCK_S)
    return http, loc


def start_nginx_proxy(lab, tag, workers, backends, opts):
    prefix = _prefix(lab, tag)
    port = free_port()
    servers = "\n".join("        server 127.0.0.1:%d;" % p for p in backend_ports(backends))
    ssl = ""
    if opts.get("tls"):
        cert, key, _ = tls_files(lab, opts["tls"])
        # nginx 1.22 offers TLS 1.0-1.2 by default (1.3 joined the default in 1.23.4):
        # the same protocols as sluice and HAProxy, or it is measured on TLS 1.2 alone
        ssl = ("        ssl_certificate %s;\n        ssl_certificate_key %s;\n"
               "        ssl_protocols TLSv1.2 TLSv1.3;\n" % (cert, key))
    cache_http, cache_loc = _nginx_cache(tag, opts)
    body = """%s
    upstream backend {
%s
        keepalive %d;
    }
    server {
        listen 127.0.0.1:%d%s%s;
%s        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
%s
        }
    }""" % (cache_http, servers, opts.get("nginx_keepalive", NGINX_KEEPALIVE), port,
             " ssl" if ssl else "",
             # sluiced's listen backlog; nginx's default 511 would drop SYNs
             # (1 s retransmits) once a stopped worker's queue holds 511
             " reuseport backlog=4096" if opts.get("nginx_reuseport") else "", ssl,
             cache_loc)
    child = _start_nginx(lab, tag, _nginx_main(lab, prefix, workers, body), prefix)
    child.meta["conf"] = os.path.join(prefix, "nginx.conf")  # the hot-swap rewrites it
    if cache_http:
        child.meta["cache_dir"] = cache_http.split()[1]
    return child, port


# ---------------------------------------------------------------- HAProxy

def haproxy_maxconn(nofile):
    """HAProxy needs about two fds per connection plus some; it refuses to start
    when maxconn does not fit the fd limit."""
    return max(100, min(10000, (nofile - 200) // 2))


def start_haproxy(lab, tag, workers, backends, opts):
    prefix = _prefix(lab, tag)
    port = free_port()
    maxconn = haproxy_maxconn(lab.nofile)
    ports = backend_ports(backends)
    if opts.get("haproxy_one_server"):
        ports = ports[:1]  # the hot-swap moves this one server between ports
    servers = "\n".join("    server s%d 127.0.0.1:%d" % (i, p) for i, p in enumerate(ports))
    admin = os.path.join(prefix, "admin.sock") if opts.get("haproxy_admin") else None
    conf_text = """# generated by tools/bench (no `log` line: no logging)
global
    nbthread {workers}
    maxconn {maxconn}
    pidfile {prefix}/haproxy.pid
{stats}
defaults
    mode http
    maxconn {maxconn}
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    http-reuse always

frontend fe
    bind 127.0.0.1:{port}{ssl}
    default_backend be

backend be
{cache_use}{servers}
{cache}""".format(workers=workers, maxconn=maxconn, prefix=prefix, port=port, servers=servers,
                  stats="    stats socket %s level admin%s\n" % (
                      admin, " expose-fd listeners" if opts.get("haproxy_expose_fd") else "")
                  if admin else "",
                  ssl=(" ssl crt %s" % tls_files(lab, opts["tls"])[2]) if opts.get("tls")
                  else "",
                  cache_use=("    http-request cache-use c\n"
                             "    http-response cache-store c\n") if opts.get("cache") else "",
                  cache=("cache c\n    total-max-size %d\n    max-object-size %d\n"
                         "    max-age 3600\n" % (CACHE_ZONE_MB, CACHE_MAX_OBJECT))
                  if opts.get("cache") else "")
    conf = os.path.join(prefix, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(conf_text)
    try:
        # -db: foreground, one process (no master-worker)
        child = Child(tag, [lab.haproxy, "-db", "-f", conf], lab.tmp,
                      stop_signal=signal.SIGTERM)
    except OSError as e:
        raise StartError("cannot run %s: %s" % (lab.haproxy, e))
    child.meta["haproxy_admin"] = admin
    child.meta["haproxy_conf"] = conf
    return child, port


# ---------------------------------------------------------------- sluice

def sluice_config(workers, port, backends, opts, pin_path=None, admin_socket=None, tls=None):
    servers = "\n".join("      - address: 127.0.0.1:%d" % p for p in backend_ports(backends))
    if opts.get("sluice_pool_yaml"):
        pool = "pool: %s" % opts["sluice_pool_yaml"]
    else:
        pool = "keepalive: %d" % opts.get("sluice_keepalive", SLUICE_KEEPALIVE)
    bpf = []
    if opts.get("sluice_steering"):
        bpf.append("steering: %s" % opts["sluice_steering"])
    if opts.get("sluice_stall_ms"):
        bpf.append("stall_ms: %d" % opts["sluice_stall_ms"])
    for k, v in sorted((opts.get("sluice_bpf") or {}).items()):
        bpf.append("%s: %s" % (k, v))
    if pin_path:
        bpf.append("pin_path: %s" % pin_path)
    top = ""
    if bpf:
        top += "bpf: { %s }\n" % ", ".join(bpf)
    if admin_socket:
        top += "admin: { socket: %s, debug: true }\n" % admin_socket
    route_cache = ""
    if opts.get("cache"):
        top += ("cache: { zones: { z: { max_size: %dm, max_object_size: %dk, shards: 16 } } }\n"
                % (CACHE_ZONE_MB, CACHE_MAX_OBJECT >> 10))
        route_cache = ("\n        cache: { zone: z, lock: { timeout: %ds, age: %ds } }"
                       % (CACHE_LOCK_S, CACHE_LOCK_S))
    return """# generated by tools/bench
workers: {workers}
log: {{ level: {level}, access_log: off }}
{top}listeners:
  - address: "127.0.0.1:{port}"
{tls}    routes:
      - upstream: backend{route_cache}
upstreams:
  backend:
    servers:
{servers}
    {pool}
{extra}""".format(workers=workers, port=port, servers=servers, pool=pool, top=top,
                  tls=("    tls: { certificates: [ { cert: %s, key: %s } ] }\n" % tls[:2]
                       if tls else ""),
                  route_cache=route_cache,
                  # info: the "steering on/off" line tells whether steering runs
                  level="info" if opts.get("sluice_steering") else "warn",
                  extra=opts.get("sluice_extra_yaml", ""))


BPF_FS = "/sys/fs/bpf"
_pin_dirs = set()


def _private_pin_path(tag):
    """A fresh directory name under bpffs for one sluiced, or None without bpffs."""
    if not os.path.isdir(BPF_FS):
        return None
    path = os.path.join(BPF_FS, "sluice-bench-%d-%s" % (os.getpid(), tag))
    shutil.rmtree(path, ignore_errors=True)  # nothing of an earlier run of that name
    _pin_dirs.add(path)
    return path


def remove_pins(path):
    if path:
        shutil.rmtree(path, ignore_errors=True)
        _pin_dirs.discard(path)


def remove_all_pins():
    for path in list(_pin_dirs):
        remove_pins(path)


def start_sluice(lab, tag, workers, backends, opts):
    sluiced = opts.get("sluiced") or lab.sluiced  # a variant may run another build
    if not (os.path.isfile(sluiced) and os.access(sluiced, os.X_OK)):
        raise StartError("%s not found (build it with `make`, or set SLUICED)" % sluiced)
    prefix = _prefix(lab, tag)
    port = free_port()
    pin = _private_pin_path(tag)
    admin = os.path.join(prefix, "admin.sock") if opts.get("sluice_admin") else None
    conf = os.path.join(prefix, "sluice.yaml")
    with open(conf, "w") as f:
        f.write(sluice_config(workers, port, backends, opts, pin, admin,
                              tls_files(lab, opts["tls"]) if opts.get("tls") else None))
    try:
        # foreground; SIGTERM = graceful stop (no clients are left by then)
        child = Child(tag, [sluiced, "-c", conf], lab.tmp, stop_signal=signal.SIGTERM)
    except OSError as e:
        remove_pins(pin)
        raise StartError("cannot run %s: %s" % (sluiced, e))
    child.meta.update(pin_path=pin, admin=admin, conf=conf)
    return child, port


# ---------------------------------------------------------------- table

@dataclass(frozen=True)
class ProxySpec:
    name: str       # key, as in BENCH_PROXIES
    label: str      # as printed
    start: object   # start function (see module docstring)


PROXIES = {
    "sluice": ProxySpec("sluice", "sluice", start_sluice),
    "nginx": ProxySpec("nginx", "nginx", start_nginx_proxy),
    "haproxy": ProxySpec("haproxy", "HAProxy", start_haproxy),
}


def start_proxy(lab, name, tag, workers, backends, opts):
    """Start proxy `name` and wait until a GET through it answers 200 (and, with an
    admin socket, until that answers too)."""
    child, port = PROXIES[name].start(lab, tag, workers, backends, opts)
    child.meta["tls"] = bool(opts.get("tls"))
    try:
        wait_http_ready(child, port, lab.start_timeout, tls=bool(opts.get("tls")))
        if child.meta.get("admin"):
            wait_unix_ready(child, child.meta["admin"], lab.start_timeout)
    except BaseException:
        stop_proxy(child)
        raise
    return child, port


def stop_proxy(child):
    """Stop a proxy and remove what it left behind (BPF pins, nginx's cache files)."""
    try:
        child.stop()
    finally:
        remove_pins(child.meta.get("pin_path"))
        if child.meta.get("cache_dir"):
            shutil.rmtree(child.meta["cache_dir"], ignore_errors=True)
