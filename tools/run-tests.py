#!/usr/bin/python3
"""Run every sluice test suite and print one total line: N passed, N failed, N skipped.

Suites: cmocka unit tests (build/selftests/unit), BPF tests (build/selftests/bpf, same
cmocka-style summary), libFuzzer smoke runs (build/fuzz/fuzz_*, each FUZZ_SMOKE_SECONDS on
its seed corpus, one test per target), pytest integration tests (selftests/integration).
Arguments name the suites to run (unit, bpf, fuzz, integration); none means all.
Exit status is non-zero when anything failed or a suite could not run.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

BUILD = os.environ.get("SLUICE_BUILD", "build")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

totals = {"passed": 0, "failed": 0, "skipped": 0}


def count_cmocka(output):
    """cmocka prints '[  PASSED  ] N test(s).', '[  FAILED  ] N test(s)...', '[  SKIPPED ] N'."""
    got = {"passed": 0, "failed": 0, "skipped": 0}
    for key, word in (("passed", "PASSED"), ("failed", "FAILED"), ("skipped", "SKIPPED")):
        for m in re.finditer(r"^\[\s+%s\s+\] (\d+) test" % word, output, re.M):
            got[key] += int(m.group(1))
    return got


def run_binaries(pattern, label):
    bins = sorted(b for b in glob.glob(os.path.join(ROOT, BUILD, pattern))
                  if os.access(b, os.X_OK) and not b.endswith((".o", ".d")))
    for b in bins:
        name = os.path.basename(b)
        try:
            p = subprocess.run([b], cwd=ROOT, capture_output=True, text=True, timeout=600)
            out = p.stdout + p.stderr
            rc = p.returncode
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            rc = -1
            out += "\nTIMEOUT\n"
        got = count_cmocka(out)
        if rc != 0 and got["failed"] == 0:
            got["failed"] = 1  # crashed or exited badly without reporting
        if rc != 0 or got["failed"]:
            sys.stdout.write(out)
        print("%s %-28s %d passed, %d failed, %d skipped" %
              (label, name, got["passed"], got["failed"], got["skipped"]), flush=True)
        for k in totals:
            totals[k] += got[k]


# what libFuzzer leaves behind for a failing input: crash (deadly signal, sanitizer
# report), leak, timeout, oom (-rss_limit_mb / -malloc_limit_mb), slow-unit
FUZZ_ARTIFACTS = ("crash-", "leak-", "timeout-", "oom-", "slow-unit-")


def fuzz_one(b, seeds, secs, keep_dir):
    """One libFuzzer target for secs seconds on a scratch copy of seeds. Returns
    (ok, execs, report): report says why a failing run failed (sanitizer/libFuzzer
    verdict, or the signal that killed the process before libFuzzer could say anything)
    and where each reproducer was kept."""
    name = os.path.basename(b)
    work = tempfile.mkdtemp(prefix="sluice-%s-" % name)
    try:
        corpus = os.path.join(work, "corpus")
        if os.path.isdir(seeds):
            shutil.copytree(seeds, corpus)
        else:
            os.mkdir(corpus)
        args = [b, "-max_total_time=%d" % secs, "-max_len=131072", "-timeout=10",
                "-rss_limit_mb=2048", "-malloc_limit_mb=2048", "-print_final_stats=1",
                "-artifact_prefix=%s/" % work, corpus]
        try:
            p = subprocess.run(args, cwd=work, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, errors="replace",
                               timeout=secs + 120)
            out, rc = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout or ""
            out = (out.decode(errors="replace") if isinstance(out, bytes) else out) + \
                (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes)
                 else (e.stderr or ""))
            rc = None
        m = re.search(r"stat::number_of_executed_units: (\d+)", out)
        execs = m.group(1) if m else "?"
        if rc == 0:
            return True, execs, ""
        lines = [out[-6000:]]
        if rc is None:
            lines.append("fuzz: %s still running %d s after its %d s budget: killed, "
                         "so libFuzzer wrote no reproducer" % (name, secs + 120, secs))
        elif rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = "signal %d" % -rc
            lines.append("fuzz: %s was killed by %s, a signal libFuzzer does not catch: "
                         "no reproducer and no final stats (%s)" %
                         (name, sig, "the kernel's OOM killer, or a kill from outside"
                          if sig == "SIGKILL" else "the target must handle or ignore it"))
        else:
            v = re.search(r"(ERROR: (?:libFuzzer|AddressSanitizer|LeakSanitizer|"
                          r"UndefinedBehaviorSanitizer)[^\n]*)", out)
            lines.append("fuzz: %s exited %d%s" % (name, rc, ": " + v.group(1) if v else
                                                   " without a sanitizer or libFuzzer verdict"))
        kept = 0
        for a in sorted(os.listdir(work)):
            if a.startswith(FUZZ_ARTIFACTS):
                os.makedirs(keep_dir, exist_ok=True)
                keep = os.path.join(keep_dir, "%s-%s" % (name, a))
                shutil.copy(os.path.join(work, a), keep)
                lines.append("fuzz: reproducer kept in %s (run: %s %s)" % (keep, b, keep))
                kept += 1
        if not kept:
            lines.append("fuzz: %s left no reproducer" % name)
        return False, execs, "\n".join(lines) + "\n"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_fuzz():
    """Each libFuzzer target for FUZZ_SMOKE_SECONDS on a scratch copy of its seed corpus
    (the committed corpus is never written). A target passes when it exits 0: no crash,
    leak, oracle abort, timeout or OOM. Needs no terminal; runs as any user."""
    secs = int(os.environ.get("FUZZ_SMOKE_SECONDS", "3"))
    bins = sorted(b for b in glob.glob(os.path.join(ROOT, BUILD, "fuzz", "fuzz_*"))
                  if os.access(b, os.X_OK) and os.path.isfile(b))
    for b in bins:
        name = os.path.basename(b)
        seeds = os.path.join(ROOT, "selftests", "fuzz", "corpus", name[len("fuzz_"):])
        ok, execs, report = fuzz_one(b, seeds, secs,
                                     os.path.join(ROOT, BUILD, "fuzz", "artifacts"))
        sys.stdout.write(report)
        print("fuzz %-28s %d passed, %d failed, 0 skipped (%s runs in %d s)" %
              (name, ok, not ok, execs, secs), flush=True)
        totals["passed" if ok else "failed"] += 1


def run_pytest():
    xml = os.path.join(ROOT, BUILD, "pytest.xml")
    env = dict(os.environ, SLUICE_BUILD=os.path.join(ROOT, BUILD))
    args = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
            "--junitxml", xml, os.path.join(ROOT, "selftests", "integration")]
    if os.environ.get("SLUICE_PYTEST_ARGS"):
        args += os.environ["SLUICE_PYTEST_ARGS"].split()
    p = subprocess.run(args, cwd=ROOT, env=env)
    if not os.path.exists(xml):
        totals["failed"] += 1
        return
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        tests = int(s.get("tests", 0))
        failed = int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped = int(s.get("skipped", 0))
        totals["passed"] += tests - failed - skipped
        totals["failed"] += failed
        totals["skipped"] += skipped
    if p.returncode not in (0, 5) and totals["failed"] == 0:
        totals["failed"] += 1


def main():
    want = set(sys.argv[1:]) or {"unit", "bpf", "fuzz", "integration"}
    unknown = want - {"unit", "bpf", "fuzz", "integration"}
    if unknown:
        print("usage: run-tests.py [unit] [bpf] [fuzz] [integration]", file=sys.stderr)
        return 2
    if "unit" in want:
        run_binaries("selftests/unit/test_*", "unit")
    if "bpf" in want:
        run_binaries("selftests/bpf/test_*", "bpf ")
    if "fuzz" in want:
        run_fuzz()
    if "integration" in want and \
            glob.glob(os.path.join(ROOT, "selftests", "integration", "test_*.py")):
        run_pytest()
    line = "%d passed, %d failed" % (totals["passed"], totals["failed"])
    if totals["skipped"]:
        line += ", %d skipped" % totals["skipped"]
    print(line)
    return 1 if totals["failed"] or totals["passed"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
