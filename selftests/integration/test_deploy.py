"""What ships for deployment works: `make install` lays out a usable tree, the systemd unit
verifies, scores <= 3.0 in `systemd-analyze security` and its ExecReload fails on a config
the daemon rejects; the shipped configs validate."""
import os
import re
import shlex
import shutil
import subprocess

import pytest

from daemon import Sluice, wait_for
from env import BUILD, SCALE, SLUICED

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "deploy/systemd/sluiced.service")
ANALYZE = shutil.which("systemd-analyze")


def make_install(tmp, **vars):
    args = ["make", "-s", "--no-print-directory", "-C", ROOT, "B=%s" % BUILD, "install"]
    args += ["%s=%s" % kv for kv in vars.items()]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def unit_keys(text):
    """[(key, value)] of a unit file, in order (keys may repeat)."""
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln and not ln.startswith(("#", ";", "[")) and "=" in ln:
            k, v = ln.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def with_nobody(text):
    """The shipped config names user sluice, which this test machine does not have."""
    assert re.search(r"^user: sluice$", text, re.M), "the shipped config drops to sluice"
    return re.sub(r"^user: sluice$", "user: nobody", text, flags=re.M)


# ---- make install -------------------------------------------------------------------

def test_make_install_destdir_tree(tmp_path):
    dest = tmp_path / "root"
    r = make_install(tmp_path, DESTDIR=str(dest))
    assert r.returncode == 0, r.stdout + r.stderr
    p = dest / "usr/local"
    want = {
        "sbin/sluiced": 0o755, "bin/sluicectl": 0o755, "lib/libsluice.a": 0o644,
        "include/sluice/sluice.h": 0o644, "share/doc/sluice/operations.md": 0o644,
        "share/doc/sluice/configuration.md": 0o644, "share/doc/sluice/README.md": 0o644,
        "share/doc/sluice/sluiced.txt": 0o644, "share/doc/sluice/sluicectl.txt": 0o644,
        "share/doc/sluice/examples/sluice.yaml": 0o644,
        "lib/systemd/system/sluiced.service": 0o644,
        "lib/sysusers.d/sluice.conf": 0o644, "lib/sysctl.d/60-sluice.conf": 0o644,
    }
    for rel, mode in want.items():
        f = p / rel
        assert f.is_file(), rel
        assert f.stat().st_mode & 0o777 == mode, (rel, oct(f.stat().st_mode))
    assert (dest / "etc/sluice/sluice.yaml").is_file()
    # the installed programs run, and their --help text is what the docs hold
    v = subprocess.run([str(p / "sbin/sluiced"), "-V"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("sluiced "), v
    assert "usage:" in (p / "share/doc/sluice/sluicectl.txt").read_text()
    # the installed config is valid (with a user this machine has)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(with_nobody((dest / "etc/sluice/sluice.yaml").read_text()))
    t = subprocess.run([str(p / "sbin/sluiced"), "-t", "-c", str(cfg)], capture_output=True,
                       text=True)
    assert t.returncode == 0, t.stderr
    # nothing of the build tree leaks into the unit: its paths are the installed ones
    unit = (p / "lib/systemd/system/sluiced.service").read_text()
    assert "ExecStart=/usr/local/sbin/sluiced -c /etc/sluice/sluice.yaml" in unit
    assert "net.ipv4.tcp_migrate_req = 1" in (p / "lib/sysctl.d/60-sluice.conf").read_text()


def test_make_install_keeps_an_edited_config(tmp_path):
    dest = tmp_path / "root"
    (dest / "etc/sluice").mkdir(parents=True)
    mine = "# the operator's own\n"
    (dest / "etc/sluice/sluice.yaml").write_text(mine)
    r = make_install(tmp_path, DESTDIR=str(dest))
    assert r.returncode == 0, r.stderr
    assert (dest / "etc/sluice/sluice.yaml").read_text() == mine
    assert "keeping" in r.stdout


def test_make_install_prefix_rewrites_the_unit(tmp_path):
    pre = tmp_path / "opt"
    r = make_install(tmp_path, PREFIX=str(pre))
    assert r.returncode == 0, r.stderr
    unit = (pre / "lib/systemd/system/sluiced.service").read_text()
    keys = dict(unit_keys(unit))
    assert keys["ExecStart"] == "%s/sbin/sluiced -c %s/etc/sluice/sluice.yaml" % (pre, pre)
    assert keys["ExecReload"].startswith("%s/bin/sluicectl " % pre)
    assert "/usr/local" not in unit
    assert (pre / "etc/sluice/sluice.yaml").is_file()


# ---- the systemd unit -----------------------------------------------------------------

def test_unit_hardening_keys():
    keys = unit_keys(open(UNIT).read())
    d = dict(keys)
    assert d["Type"] == "notify"
    assert d["NoNewPrivileges"] == "yes"
    assert d["ProtectSystem"] == "strict"
    assert d["ProtectKernelTunables"] == "yes"
    bounding = set(d["CapabilityBoundingSet"].split())
    assert bounding == {"CAP_BPF", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID",
                        "CAP_SETPCAP"}, bounding
    assert "CAP_SYS_ADMIN" not in open(UNIT).read()
    assert d["AmbientCapabilities"] == ""
    assert any(k == "SystemCallFilter" and "@system-service" in v for k, v in keys)
    assert d["ExecStartPre"] == "/usr/local/sbin/sluiced -t -c /etc/sluice/sluice.yaml"
    assert d["ExecStart"] == "/usr/local/sbin/sluiced -c /etc/sluice/sluice.yaml"
    assert "kill" not in d["ExecReload"]  # a signal cannot report a rejected file


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze not installed")
def test_unit_verifies_clean(tmp_path):
    """systemd-analyze verify on the installed unit (its binaries exist there)."""
    pre = tmp_path / "p"
    r = make_install(tmp_path, PREFIX=str(pre))
    assert r.returncode == 0, r.stderr
    v = subprocess.run([ANALYZE, "verify", str(pre / "lib/systemd/system/sluiced.service")],
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and not v.stderr.strip() and not v.stdout.strip(), v


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze not installed")
def test_unit_security_exposure_is_ok():
    s = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", UNIT],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for sluiced\.service: ([0-9.]+) (\w+)", s.stdout)
    assert m, s.stdout + s.stderr
    assert float(m.group(1)) <= 3.0, s.stdout
    assert m.group(2) in ("OK", "SAFE"), m.group(0)


def exec_reload(sock):
    """The unit's ExecReload command line, pointed at this build and this socket."""
    cmd = shlex.split(dict(unit_keys(open(UNIT).read()))["ExecReload"])
    assert cmd[0] == "/usr/local/bin/sluicectl"
    cmd[0] = os.path.join(BUILD, "sluicectl")
    return [sock if a == "/run/sluice/admin.sock" else a for a in cmd]


def test_unit_reload_of_a_broken_config_fails(sluice, tmp_path):
    """Hostile first: systemctl reload runs ExecReload; it must fail (non-zero) when the
    daemon refuses the file, and the old config must keep serving."""
    from test_admin import sock_path
    sock = sock_path(tmp_path)
    sl = sluice.new()
    cfg = sluice.config([{"respond": {"status": 200, "body": "one\n"}}], sl=sl,
                        admin={"socket": sock})
    sl.start(cfg)
    assert wait_for(lambda: os.path.exists(sock), 5 * SCALE)
    cmd = exec_reload(sock)
    sl.write_config("listeners:\n  - address: [\n")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * SCALE)
    assert r.returncode == 1, r
    assert "reload rejected" in r.stderr and "sluice" in r.stderr, r.stderr
    with sl.client() as c:
        assert c.request("GET", "/").body == b"one\n"
    sl.write_config(dict(cfg, listeners=[dict(cfg["listeners"][0],
                                              routes=[{"respond": {"status": 200,
                                                                   "body": "two\n"}}])]))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * SCALE)
    assert r.returncode == 0, r
    with sl.client() as c:
        assert c.request("GET", "/").body == b"two\n"


def test_unit_reload_without_a_daemon_fails(tmp_path):
    r = subprocess.run(exec_reload(str(tmp_path / "none.sock")), capture_output=True,
                       text=True, timeout=20 * SCALE)
    assert r.returncode == 1, r


def test_shipped_config_validates(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(with_nobody(open(os.path.join(ROOT, "deploy/sluice.yaml")).read()))
    p = subprocess.run([SLUICED, "-t", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_shipped_config_names_a_user_that_must_exist():
    """Hostile: on a node without the sluice user, `sluiced -t` (the unit's ExecStartPre)
    says so instead of starting as root."""
    if subprocess.run(["getent", "passwd", "sluice"], capture_output=True).returncode == 0:
        pytest.skip("this machine has a sluice user")
    p = subprocess.run([SLUICED, "-t", "-c", os.path.join(ROOT, "deploy/sluice.yaml")],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert "user 'sluice' does not exist" in p.stderr, p.stderr


# ---- the Kubernetes manifests --------------------------------------------------------
# No kubeconform or kubectl in Debian: the manifests are parsed with PyYAML and checked
# against the fields of the API objects they use (a misspelt key is an error, as the API
# server's strict decoding would make it) and against what sluice needs to work.

import hashlib  # noqa: E402

import yaml  # noqa: E402

KUBE = os.path.join(ROOT, "deploy/kubernetes/sluice.yaml")
CAPS_ALLOWED = {"BPF", "SETUID", "SETGID", "SETPCAP", "NET_BIND_SERVICE", "NET_ADMIN"}

# Fields of the core/v1 and apps/v1 types the manifest uses (Kubernetes 1.29 API).
FIELDS = {
    "ObjectMeta": {"name", "namespace", "labels", "annotations"},
    "DaemonSetSpec": {"selector", "template", "updateStrategy", "minReadySeconds",
                      "revisionHistoryLimit"},
    "PodTemplate": {"metadata", "spec"},
    "PodSpec": {"hostNetwork", "dnsPolicy", "serviceAccountName",
                "automountServiceAccountToken", "priorityClassName",
                "terminationGracePeriodSeconds", "tolerations", "securityContext",
                "initContainers", "containers", "volumes", "nodeSelector", "affinity",
                "hostPID", "hostIPC"},
    "Container": {"name", "image", "imagePullPolicy", "command", "args", "ports", "env",
                  "securityContext", "startupProbe", "readinessProbe", "livenessProbe",
                  "lifecycle", "resources", "volumeMounts", "workingDir"},
    "ContainerPort": {"name", "containerPort", "protocol", "hostPort", "hostIP"},
    "SecurityContext": {"privileged", "allowPrivilegeEscalation", "readOnlyRootFilesystem",
                        "runAsUser", "runAsGroup", "runAsNonRoot", "capabilities",
                        "seccompProfile"},
    "PodSecurityContext": {"fsGroup", "seccompProfile", "runAsUser", "runAsGroup",
                           "runAsNonRoot", "sysctls", "supplementalGroups"},
    "Probe": {"httpGet", "exec", "tcpSocket", "periodSeconds", "failureThreshold",
              "initialDelaySeconds", "timeoutSeconds", "successThreshold"},
    "HTTPGetAction": {"path", "port", "host", "scheme", "httpHeaders"},
    "VolumeMount": {"name", "mountPath", "readOnly", "mountPropagation", "subPath"},
    "Volume": {"name", "configMap", "secret", "hostPath", "emptyDir"},
    "Resources": {"requests", "limits"},
}


def strict(obj, kind, where):
    extra = set(obj) - FIELDS[kind]
    assert not extra, "%s: unknown %s field(s) %s" % (where, kind, sorted(extra))


def kube_docs():
    with open(KUBE) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kube(kind):
    found = [d for d in kube_docs() if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def makefile_version():
    m = re.search(r"^VERSION\s*:=\s*(\S+)", open(os.path.join(ROOT, "Makefile")).read(), re.M)
    return m.group(1)


def kube_config_text():
    return kube("ConfigMap")["data"]["sluice.yaml"]


def test_kubernetes_objects_are_well_formed():
    docs = kube_docs()
    kinds = [d["kind"] for d in docs]
    assert kinds == ["Namespace", "ServiceAccount", "Secret", "ConfigMap", "DaemonSet"], kinds
    for d in docs:
        assert d["apiVersion"] == ("apps/v1" if d["kind"] == "DaemonSet" else "v1"), d["kind"]
        strict(d["metadata"], "ObjectMeta", d["kind"])
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "sluice", d["kind"]
    ds = kube("DaemonSet")
    strict(ds["spec"], "DaemonSetSpec", "DaemonSet.spec")
    strict(ds["spec"]["template"], "PodTemplate", "template")
    pod = ds["spec"]["template"]["spec"]
    strict(pod, "PodSpec", "pod")
    strict(pod["securityContext"], "PodSecurityContext", "pod.securityContext")
    sel = ds["spec"]["selector"]["matchLabels"]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sel.items()), "selector does not match"
    for c in pod["initContainers"] + pod["containers"]:
        strict(c, "Container", c["name"])
        strict(c.get("securityContext", {}), "SecurityContext", c["name"])
        strict(c.get("resources", {}), "Resources", c["name"])
        for p in c.get("ports", []):
            strict(p, "ContainerPort", c["name"])
        for m in c.get("volumeMounts", []):
            strict(m, "VolumeMount", c["name"])
            assert m["name"] in {v["name"] for v in pod["volumes"]}, m
            assert m.get("mountPropagation", "None") in ("None", "HostToContainer",
                                                         "Bidirectional"), m
        for pr in ("startupProbe", "readinessProbe", "livenessProbe"):
            if pr in c:
                strict(c[pr], "Probe", "%s.%s" % (c["name"], pr))
                strict(c[pr]["httpGet"], "HTTPGetAction", pr)
    for v in pod["volumes"]:
        strict(v, "Volume", v["name"])


def test_image_is_pinned_to_the_version_and_not_pulled_every_time():
    pod = kube("DaemonSet")["spec"]["template"]["spec"]
    version = makefile_version()
    for c in pod["initContainers"] + pod["containers"]:
        m = re.match(r"^[a-z0-9.\-/]+/sluice:([0-9][^@]*)(@sha256:[0-9a-f]{64})?$", c["image"])
        assert m, "%s: image %s is not REGISTRY/sluice:VERSION[@sha256:...]" % (
            c["name"], c["image"])
        assert m.group(1) == version, (c["image"], version)
        assert c["image"] != "sluice:latest" and not c["image"].endswith(":latest")
        assert c["imagePullPolicy"] == "IfNotPresent", c["name"]
    assert kube("DaemonSet")["metadata"]["labels"]["app.kubernetes.io/version"] == version


def test_probes_hit_the_admin_port_and_match_the_config():
    cfg = yaml.safe_load(kube_config_text())
    admin_port = int(cfg["admin"]["listen"].rsplit(":", 1)[1])
    (c,) = kube("DaemonSet")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["admin"] == admin_port
    assert ports["http"] == int(cfg["listeners"][0]["address"].rsplit(":", 1)[1])
    want = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in want.items():
        g = c[probe]["httpGet"]
        assert g["path"] == path and g["port"] in ("admin", admin_port), (probe, g)
        assert "httpHeaders" not in g  # no token in the pod spec: probes are public
    assert c["readinessProbe"]["httpGet"]["port"] != "http"


def test_metrics_scrape_and_token_secret():
    ds = kube("DaemonSet")
    ann = ds["spec"]["template"]["metadata"]["annotations"]
    cfg = yaml.safe_load(kube_config_text())
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/metrics"
    assert int(ann["prometheus.io/port"]) == int(cfg["admin"]["listen"].rsplit(":", 1)[1])
    # token from a Secret, mounted where token_file points
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    vols = {v["name"]: v for v in pod["volumes"]}
    tf = cfg["admin"]["token_file"]
    mount = [m for m in c["volumeMounts"] if tf.startswith(m["mountPath"] + "/")]
    assert len(mount) == 1, tf
    sec = vols[mount[0]["name"]]["secret"]
    assert sec["secretName"] == kube("Secret")["metadata"]["name"]
    assert tf[len(mount[0]["mountPath"]) + 1:] in kube("Secret")["stringData"]
    assert "token" not in cfg["admin"], "no inline token in the ConfigMap"
    # the dropped user reads it on reload: group-readable, and the pod's fsGroup is it
    assert sec["defaultMode"] & 0o040 and not sec["defaultMode"] & 0o007
    assert pod["securityContext"]["fsGroup"] == 65532


def test_config_checksum_annotation_matches_the_configmap():
    """Hostile: a ConfigMap edit that forgets the annotation would never roll the pods."""
    ann = kube("DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    want = "sha256:" + hashlib.sha256(kube_config_text().encode()).hexdigest()
    assert ann["checksum/config"] == want, \
        "update checksum/config in %s to %s" % (KUBE, want)


def test_bpffs_comes_from_the_host_like_cilium():
    pod = kube("DaemonSet")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    (c,) = pod["containers"]
    m = [m for m in c["volumeMounts"] if m["mountPath"] == "/sys/fs/bpf"]
    assert len(m) == 1
    assert vols[m[0]["name"]]["hostPath"] == {"path": "/sys/fs/bpf", "type": "DirectoryOrCreate"}
    assert m[0]["mountPropagation"] == "HostToContainer"
    (init,) = [i for i in pod["initContainers"] if i["name"] == "mount-bpffs"]
    (im,) = [m for m in init["volumeMounts"] if m["mountPath"] == "/sys/fs/bpf"]
    assert im["mountPropagation"] == "Bidirectional"  # needs privileged, which it is
    assert init["securityContext"]["privileged"] is True
    assert "mount -t bpf bpf /sys/fs/bpf" in " ".join(init["command"])
    cfg = yaml.safe_load(kube_config_text())
    assert cfg["bpf"]["pin_path"].startswith("/sys/fs/bpf/")


def test_sluiced_container_is_unprivileged_with_few_capabilities():
    pod = kube("DaemonSet")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc.get("privileged", False) is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    add = set(sc["capabilities"]["add"])
    assert add <= CAPS_ALLOWED and "SYS_ADMIN" not in add, add
    assert {"SETUID", "SETGID", "SETPCAP"} <= add  # the drop to user: needs them
    assert yaml.safe_load(kube_config_text())["user"] == "sluice"
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert "command" not in c and "args" not in c  # the image's entrypoint and args


def test_no_host_sysctl_from_the_sluiced_container():
    """tcp_migrate_req: not in the pod spec (kubelet refuses net.* with hostNetwork), not
    silently from sluiced (read-only /proc/sys there): one visible init container."""
    pod = kube("DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert "sysctls" not in pod["securityContext"]
    (init,) = [i for i in pod["initContainers"] if i["name"] == "sysctl-migrate"]
    assert "tcp_migrate_req" in " ".join(init["command"])


def test_scheduling_resources_and_rollout():
    ds = kube("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["priorityClassName"] in ("system-node-critical", "system-cluster-critical")
    assert {"operator": "Exists"} in pod["tolerations"]
    for c in pod["initContainers"] + pod["containers"]:
        r = c["resources"]
        assert r["requests"]["cpu"] and r["requests"]["memory"] and r["limits"]["memory"], c
    st = ds["spec"]["updateStrategy"]
    assert st["type"] == "RollingUpdate"
    # one sluiced per port: a surge pod on the same node could never become ready
    assert st["rollingUpdate"]["maxSurge"] == 0 and st["rollingUpdate"]["maxUnavailable"] == 1
    cfg = yaml.safe_load(kube_config_text())
    grace_s = int(cfg["shutdown"]["grace"].rstrip("s"))
    pre = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pod["terminationGracePeriodSeconds"] > grace_s + int(pre[-1]), \
        "the kubelet would SIGKILL before shutdown.grace is over"


def kube_config_for_this_machine(tmp_path):
    """The ConfigMap's config with a user and a token file this machine has."""
    tok = tmp_path / "token"
    tok.write_text("k8s-test-token\n")
    text = with_nobody(kube_config_text())
    return text.replace("/etc/sluice-secret/token", str(tok))


def test_kubernetes_configmap_validates(tmp_path):
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(kube_config_for_this_machine(tmp_path))
    p = subprocess.run([SLUICED, "-t", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_kubernetes_shipped_empty_secret_is_refused(tmp_path):
    """Hostile: applying the manifests without creating a token must not serve /metrics
    and the admin API with an empty (guessable) token."""
    tok = tmp_path / "token"
    tok.write_text(kube("Secret")["stringData"]["token"])
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(with_nobody(kube_config_text()).replace("/etc/sluice-secret/token",
                                                           str(tok)))
    p = subprocess.run([SLUICED, "-t", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 1
    assert "token_file" in p.stderr and "empty" in p.stderr, p.stderr


def test_make_uninstall_leaves_only_the_config(tmp_path):
    dest = tmp_path / "root"
    assert make_install(tmp_path, DESTDIR=str(dest)).returncode == 0
    args = ["make", "-s", "--no-print-directory", "-C", ROOT, "B=%s" % BUILD, "uninstall",
            "DESTDIR=%s" % dest]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    left = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert left == ["etc/sluice/sluice.yaml"], left
