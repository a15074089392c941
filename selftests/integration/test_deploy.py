"""The shipped deployment files carry configurations that sluiced accepts."""
import os
import subprocess

from env import SLUICED

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def configmap_config(path):
    """The sluice.yaml block of the ConfigMap (a literal block after 'sluice.yaml: |')."""
    lines = open(path).read().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "sluice.yaml: |") + 1
    indent = len(lines[start]) - len(lines[start].lstrip())
    out = []
    for ln in lines[start:]:
        if ln.strip() and len(ln) - len(ln.lstrip()) < indent:
            break
        out.append(ln[indent:])
    return "\n".join(out) + "\n"


def test_kubernetes_configmap_validates(tmp_path):
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(configmap_config(os.path.join(ROOT, "deploy/kubernetes/sluice.yaml")))
    p = subprocess.run([SLUICED, "-t", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_systemd_unit_points_at_the_daemon_flags():
    unit = open(os.path.join(ROOT, "deploy/systemd/sluiced.service")).read()
    assert "ExecStart=/usr/local/sbin/sluiced -c /etc/sluice/sluice.yaml" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "ExecStartPre=/usr/local/sbin/sluiced -t -c" in unit
