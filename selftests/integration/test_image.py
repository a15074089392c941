"""make image: the OCI image builds from Debian packages only, fails clearly without a
mirror, and its rootfs runs the image's exact entrypoint and args with the DaemonSet's
mounts (host-style bpffs, the ConfigMap, the token Secret, the admin socket directory),
its capabilities (drop ALL, add the four it names, no new privileges) and a read-only
root, in a private network namespace: /readyz, /metrics with the token, a proxied
request, and sluiced running as the image's sluice user afterwards.

(`podman run` does not work on the test machine, so the rootfs is run under unshare and
chroot; the build needs root and a reachable Debian mirror, else the build test skips.)"""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from env import BUILD, SCALE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools/image/build-image.sh")
KUBE = os.path.join(ROOT, "deploy/kubernetes/sluice.yaml")
TOOLS = [shutil.which(t) for t in ("mmdebstrap", "umoci", "curl", "unshare", "chroot")]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="image build needs root"),
    pytest.mark.skipif(not all(TOOLS), reason="mmdebstrap/umoci/curl not installed "
                       "(tools/install-deps.sh image)"),
]


def version():
    return re.search(r"^VERSION\s*:=\s*(\S+)", open(os.path.join(ROOT, "Makefile")).read(),
                     re.M).group(1)


def build_dir(tmp):
    """A build directory with this build's binaries, so the image test never touches
    build/ (nor leaves an archive there)."""
    b = os.path.join(tmp, "b")
    os.makedirs(b, exist_ok=True)
    for f in ("sluiced", "sluicectl"):
        shutil.copy2(os.path.join(BUILD, f), b)
    return b


def run_build(b, **env):
    e = dict(os.environ, B=b, VERSION=version(), **env)
    return subprocess.run([SCRIPT], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=1200)


def test_unreachable_mirror_fails_clearly(tmp_path):
    """Hostile first: no network (or no mirror cache) must fail at once, say why and what
    to set, and leave no archive behind."""
    b = build_dir(str(tmp_path))
    r = run_build(b, SLUICE_IMAGE_MIRROR="http://127.0.0.1:9/debian")
    assert r.returncode == 1, r
    assert "cannot reach the Debian mirror http://127.0.0.1:9/debian" in r.stderr, r.stderr
    assert "SLUICE_IMAGE_MIRROR" in r.stderr and "Nothing was built" in r.stderr
    assert "mmdebstrap" not in r.stdout  # it stopped before the rootfs step
    assert not any(f.endswith(".oci.tar") for f in os.listdir(b))


def test_missing_mirror_copy_fails_clearly(tmp_path):
    r = run_build(build_dir(str(tmp_path)), SLUICE_IMAGE_MIRROR="file:///nonexistent/debian")
    assert r.returncode == 1 and "cannot reach the Debian mirror" in r.stderr, r


def test_missing_binaries_fail_clearly(tmp_path):
    b = str(tmp_path / "empty")
    os.makedirs(b)
    r = run_build(b)
    assert r.returncode == 1 and "sluiced is missing (make all first)" in r.stderr, r


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("image"))
    b = build_dir(tmp)
    mirror = os.environ.get("SLUICE_IMAGE_MIRROR", "http://deb.debian.org/debian")
    probe = subprocess.run(["curl", "-fsS", "--max-time", "20", "-o", "/dev/null",
                            mirror + "/dists/bookworm/InRelease"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no Debian mirror reachable at %s" % mirror)
    r = run_build(b)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    yield b, r
    shutil.rmtree(tmp, ignore_errors=True)


def test_image_archive_is_an_oci_layout(image, tmp_path):
    b, r = image
    v = version()
    arc = os.path.join(b, "sluice-%s.oci.tar" % v)
    assert os.path.isfile(arc), os.listdir(b)
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run(["tar", "-xf", arc, "-C", str(x)], check=True)
    assert json.loads((x / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    idx = json.loads((x / "index.json").read_text())
    (m,) = idx["manifests"]
    assert m["annotations"]["org.opencontainers.image.ref.name"] == v
    digest = open(os.path.join(b, "sluice-%s.digest" % v)).read().strip()
    assert m["digest"] == digest and digest in r.stdout
    # nothing from a registry: the one layer is the mmdebstrap rootfs
    man = json.loads((x / "blobs/sha256" / m["digest"].split(":")[1]).read_text())
    assert len(man["layers"]) == 1
    cfg = json.loads((x / "blobs/sha256" / man["config"]["digest"].split(":")[1]).read_text())
    assert cfg["config"]["Entrypoint"] == ["/usr/sbin/sluiced"]
    assert cfg["config"]["Cmd"] == ["-c", "/etc/sluice/sluice.yaml"]
    assert cfg["config"]["Labels"]["org.opencontainers.image.version"] == v


@pytest.fixture(scope="module")
def bundle(image, tmp_path_factory):
    b, _ = image
    d = str(tmp_path_factory.mktemp("bundle"))
    x = os.path.join(d, "layout")
    os.makedirs(x)
    subprocess.run(["tar", "-xf", os.path.join(b, "sluice-%s.oci.tar" % version()), "-C", x],
                   check=True)
    bd = os.path.join(d, "bundle")
    subprocess.run(["umoci", "unpack", "--image", "%s:%s" % (x, version()), bd], check=True,
                   capture_output=True)
    yield bd
    shutil.rmtree(d, ignore_errors=True)


def test_rootfs_is_minimal_and_has_the_user(bundle):
    rootfs = os.path.join(bundle, "rootfs")
    assert os.access(os.path.join(rootfs, "usr/sbin/sluiced"), os.X_OK)
    assert os.access(os.path.join(rootfs, "usr/bin/sluicectl"), os.X_OK)
    passwd = open(os.path.join(rootfs, "etc/passwd")).read()
    assert re.search(r"^sluice:x:65532:65532:", passwd, re.M), passwd
    assert not os.path.exists(os.path.join(rootfs, "usr/bin/apt-get"))  # no package manager
    assert not os.listdir(os.path.join(rootfs, "usr/share/man")) if os.path.isdir(
        os.path.join(rootfs, "usr/share/man")) else True
    # every library the binaries need is there
    r = subprocess.run(["chroot", rootfs, "/usr/sbin/sluiced", "-V"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("sluiced %s" % version()), r
    r = subprocess.run(["chroot", rootfs, "/usr/bin/sluicectl", "version"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r


RUN = r"""
set -eu
R=$1; CONF=$2; SECRET=$3; OUT=$4
shift 4
ip link set lo up
# readOnlyRootFilesystem: the rootfs read-only, then the pod's volumes over it
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t sysfs -o ro sysfs "$R/sys"         # as the runtime does (BTF for CO-RE)
mount -t bpf bpf "$R/sys/fs/bpf"            # the host's bpffs in the pod; a fresh one here
mount --bind "$CONF" "$R/etc/sluice"        # the ConfigMap
mount --bind "$SECRET" "$R/etc/sluice-secret"
mount -t tmpfs -o mode=0755 tmpfs "$R/run/sluice"
cd "$OUT"
python3 -m http.server 9000 --bind 127.0.0.1 >/dev/null 2>&1 &
BK=$!
until curl -fs -o /dev/null http://127.0.0.1:9000/; do sleep 0.1; done
# the DaemonSet's securityContext: drop ALL, add BPF SETUID SETGID SETPCAP, no new privs
chroot "$R" /usr/bin/setpriv --bounding-set=-all,+bpf,+setuid,+setgid,+setpcap \
    --inh-caps=-all --no-new-privs -- "$@" >"$OUT/sluiced.out" 2>"$OUT/sluiced.err" &
SL=$!
i=0
until curl -fs -o /dev/null http://127.0.0.1:9901/readyz; do
    i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1
done
echo "readyz=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9901/readyz)"
echo "healthz=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9901/healthz)"
echo "metrics_no_token=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9901/metrics)"
curl -s -H "Authorization: Bearer $(cat "$SECRET/token")" http://127.0.0.1:9901/metrics >"$OUT/metrics"
echo "metrics=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$SECRET/token")" http://127.0.0.1:9901/metrics)"
echo "proxied=$(curl -s -o "$OUT/body" -w '%{http_code}' http://127.0.0.1:8080/marker.txt)"
P=$SL  # chroot and setpriv exec: the same process
echo "uid=$(awk '/^Uid:/{print $3}' /proc/$P/status)"
echo "capeff=$(awk '/^CapEff:/{print $2}' /proc/$P/status)"
echo "threads_root=$(grep -l '^Uid:[[:space:]]*0' /proc/$P/task/*/status 2>/dev/null | wc -l)"
ls -ln "$R/sys/fs/bpf/sluice" >"$OUT/pins" 2>&1 || true
kill -TERM $SL
rc=0; wait $SL || rc=$?
echo "exit=$rc"
kill $BK 2>/dev/null || true
"""


def test_entrypoint_runs_with_the_daemonset_mounts(bundle, tmp_path):
    rootfs = os.path.join(bundle, "rootfs")
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    args = spec["process"]["args"]
    assert args == ["/usr/sbin/sluiced", "-c", "/etc/sluice/sluice.yaml"], args
    docs = [d for d in yaml.safe_load_all(open(KUBE)) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"/etc/sluice", "/etc/sluice-secret", "/sys/fs/bpf", "/run/sluice"}
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "sluice.yaml").write_text(cm["data"]["sluice.yaml"])  # as shipped: user sluice
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "token").write_text("image-test-token\n")
    os.chmod(secret / "token", 0o440)
    os.chown(secret / "token", 0, 65532)  # the pod's fsGroup
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker.txt").write_text("from the backend\n")
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--",
                        "sh", "-c", RUN, "run", rootfs, str(conf), str(secret), str(out)]
                       + args, capture_output=True, text=True, timeout=120 * SCALE)
    err = (out / "sluiced.err").read_text() if (out / "sluiced.err").exists() else ""
    res = dict(ln.split("=", 1) for ln in r.stdout.splitlines() if "=" in ln)
    info = "%s\n%s\nsluiced stderr:\n%s" % (r.stdout, r.stderr, err[-4000:])
    assert r.returncode == 0, info
    assert res.get("readyz") == "200" and res.get("healthz") == "200", info
    assert res.get("metrics_no_token") == "401", info
    assert res.get("metrics") == "200", info
    assert "sluice_" in (out / "metrics").read_text(), info
    assert res.get("proxied") == "200", info
    assert (out / "body").read_text() == "from the backend\n"
    assert res.get("uid") == "65532", info  # the image's sluice user
    assert res.get("capeff") == "0000000000000000", info
    assert res.get("threads_root") == "0", info
    assert res.get("exit") == "0", info
    assert 'msg="privileges dropped" user=sluice uid=65532' in err, err
    assert 'msg="steering on"' in err, err
