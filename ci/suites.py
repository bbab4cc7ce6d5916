#!/usr/bin/env python3
"""Third-party suites, natively and under vkernel, compared (issue 20).

Two suites run twice each, once on the host and once as a vproc of the
release `vkernel` example, in the same job and with the same environment:

* CPython's regression tests (Debian's /usr/bin/python3 with
  libpython3.11-testsuite): `python3 -m test --junit-xml FILE MODULE`, one
  module per run; every test id gets an outcome (pass, fail, error, skip,
  missing). A test is *lost* when it passes natively and does anything else
  under vkernel (a skip counts: the vproc made a feature probe fail).
* stress-ng stressors with `--verify`, one stressor, one instance, a few
  seconds each: exit status and bogo ops, natively and under vkernel.

Every run has a timeout (the process group is killed; the run is recorded
as "timeout"), so a hang ends with a message, never a stuck CI job.

Budgets (VKERNEL_SUITES or --budget): `short` (a few modules and stressors,
about 5 minutes under vkernel on our 2-core CI machine; what .ci/run runs),
`long` (every module and stressor of issue 20), `off`.

CI decides against a checked-in baseline (ci/suites-baseline.txt) of what is
known to be lost today: it fails only on a NEW loss (a test or stressor not
in the baseline), after re-running the new losses once under vkernel to
tell a flake from a regression; entries of the baseline that now pass are
printed loudly as improvements (refresh the baseline to lock them in).
Entries for modules or stressors that this budget did not run are left
alone. Refresh the baseline with `ci/suites.py --budget long
--update-baseline` (see docs/SUITES.md).

Written in Python rather than shell or Rust: the CPython suite needs
python3 anyway, its per-test results come as JUnit XML (xml.etree, in the
standard library), and CI does not have to build another binary first.

Exit status: 0 when nothing new is lost, 1 on a regression, 2 on a usage
or setup error.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = REPO / "ci" / "suites-baseline.txt"
DEFAULT_VKERNEL = REPO / "target" / "release" / "examples" / "vkernel"
PYTHON = "/usr/bin/python3"
STRESS_NG = "/usr/bin/stress-ng"

# The vproc's environment (what `vkernel run` gives it); native runs get the
# same one so that the two runs differ only in the kernel underneath.
ENV = {"PATH": "/bin:/usr/bin:/sbin:/usr/sbin", "HOME": "/", "TERM": "xterm"}
# Added to both (`-e` for the vproc): a run killed at its timeout still has
# in its log every line the test runner printed.
EXTRA_ENV = {"PYTHONUNBUFFERED": "1"}

# issue 20's modules. The short budget's are quick under vkernel and cover
# files, fcntl/flock, mmap, rlimits and signals.
MODULES_LONG = [
    "test_os",
    "test_posix",
    "test_signal",
    "test_subprocess",
    "test_mmap",
    "test_fcntl",
    "test_fileio",
    "test_shutil",
    "test_pathlib",
    "test_time",
    "test_resource",
    "test_eintr",
    "test_io",
]
MODULES_SHORT = ["test_fcntl", "test_fileio", "test_mmap", "test_resource", "test_shutil"]

STRESSORS_LONG = [
    "fork",
    "vfork",
    "pipe",
    "mmap",
    "futex",
    "yield",
    "mutex",
    "sem",
    "shm",
    "fcntl",
    "flock",
    "lockf",
    "signal",
    "sigq",
    "clock",
    "timer",
    "dir",
    "dentry",
    "open",
    "msync",
    "iomix",
]
# Per-stressor options: the memory stressors default to 256 MiB an instance,
# which makes a few-seconds run a couple of bogo ops; 16 MiB gives counts
# worth comparing (and keeps the vproc's overlay small for iomix).
STRESSOR_OPTS = {
    "mmap": ["--mmap-bytes", "16m"],
    "msync": ["--msync-bytes", "16m"],
    "iomix": ["--iomix-bytes", "16m"],
}
STRESSORS_SHORT = ["fork", "pipe", "mmap", "futex", "signal", "open", "flock"]

BUDGETS = {
    # modules, stressors, seconds per stressor, timeout per module run,
    # vCPUs of the vkernel
    "short": dict(modules=MODULES_SHORT, stressors=STRESSORS_SHORT, stress_secs=2, module_timeout=150),
    "long": dict(modules=MODULES_LONG, stressors=STRESSORS_LONG, stress_secs=5, module_timeout=600),
}


def log(msg):
    print(msg, flush=True)


# ---- running one command with a timeout ----------------------------------


class Run:
    """What one command did: its status (exit code, 128+signal, or None on
    timeout), its combined output and the seconds it took."""

    def __init__(self, status, output, secs):
        self.status = status
        self.output = output
        self.secs = secs

    @property
    def timed_out(self):
        return self.status is None

    def status_text(self):
        return "timeout" if self.timed_out else str(self.status)


def run_cmd(argv, timeout, cwd, log_path):
    """Run argv (stdin /dev/null, stdout+stderr into log_path) in its own
    process group; kill that group when it outlives `timeout` seconds."""
    start = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**ENV, **EXTRA_ENV},
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
            status = rc if rc >= 0 else 128 - rc
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = None
    # A grandchild that kept the group alive (a native test's daemon) is
    # ended with the group we created.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    secs = time.monotonic() - start
    return Run(status, Path(log_path).read_text(errors="replace"), secs)


def vkernel_argv(vk, cpus, mem, binds, argv):
    a = [str(vk), "run", "--cpus", str(cpus), "--mem", str(mem)]
    for b in binds:
        a += ["--bind", b]
    for k, v in EXTRA_ENV.items():
        a += ["-e", f"{k}={v}"]
    return a + argv


# ---- CPython --------------------------------------------------------------

def parse_junit(path):
    """test id -> outcome (pass, fail, error, skip) from `--junit-xml`."""
    out = {}
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = case.get("name")
        if not name:
            continue
        if case.find("failure") is not None:
            outcome = "fail"
        elif case.find("error") is not None:
            outcome = "error"
        elif case.find("skipped") is not None or case.get("status") == "skipped":
            outcome = "skip"
        else:
            outcome = "pass"
        # unittest reports subtests and a class's setUpClass under odd
        # names; a repeated id keeps its worst outcome.
        prev = out.get(name)
        if prev is None or prev == "pass":
            out[name] = outcome
    return out


def parse_verbose(text):
    """Fallback when the runner died before writing its XML: the `-v`
    lines `test_x (test.mod.Class.test_x) ... ok`."""
    out = {}
    pat = re.compile(r"^(test\w*) \(([\w.]+)\)[^\n]*?\.\.\. ?(.*)$", re.M)
    for m in pat.finditer(text):
        tid, rest = m.group(2), m.group(3).strip()
        if not tid.endswith("." + m.group(1)):
            tid = tid + "." + m.group(1)
        if rest.startswith("ok"):
            out[tid] = "pass"
        elif rest.startswith("skipped"):
            out[tid] = "skip"
        elif rest.startswith("FAIL"):
            out[tid] = "fail"
        elif rest.startswith("ERROR"):
            out[tid] = "error"
        # anything else: the test printed something; its outcome is on a
        # later line we do not try to pair up (it stays "missing").
    return out


def run_module(module, where, ctx, match=None):
    """Run one CPython test module natively or under vkernel; return
    (Run, {test id: outcome})."""
    d = ctx.out / "cpython" / where
    d.mkdir(parents=True, exist_ok=True)
    suffix = "-rerun" if match else ""
    xml = d / f"{module}{suffix}.xml"
    if xml.exists():
        xml.unlink()
    # -v: the fallback parser needs it (a runner killed at the timeout or
    # crashed writes no XML; its log still tells what ran).
    argv = [PYTHON, "-m", "test", "-v", "--junit-xml", str(xml)]
    if match:
        for m in match:
            argv += ["-m", m]
    argv.append(module)
    logf = d / f"{module}{suffix}.log"
    if where == "native":
        r = run_cmd(argv, ctx.module_timeout, ctx.work, logf)
    else:
        # The output directory is bound read-write so the XML reaches the
        # host; everything else the runner writes (its temp dirs under
        # /tmp) stays in the vproc's in-memory overlay.
        argv = vkernel_argv(ctx.vkernel, ctx.cpus, ctx.mem, [f"{d}:rw"], argv)
        r = run_cmd(argv, ctx.module_timeout, ctx.work, logf)
    results = {}
    if xml.exists():
        try:
            results = parse_junit(xml)
        except ET.ParseError:
            results = {}
    if not results:
        results = parse_verbose(r.output)
    return r, results


def cpython_suite(ctx):
    rows = []
    lost = {}
    for module in ctx.modules:
        nr, nres = run_module(module, "native", ctx)
        log(f"   {module}: native {nr.status_text()} in {nr.secs:.1f}s, {count(nres, 'pass')}/{len(nres)} pass")
        vr, vres = run_module(module, "vkernel", ctx)
        ids = sorted(set(nres) | set(vres))
        mod_lost = [t for t in ids if nres.get(t) == "pass" and vres.get(t) != "pass"]
        log(
            f"   {module}: vkernel {vr.status_text()} in {vr.secs:.1f}s, "
            f"{count(vres, 'pass')}/{len(vres)} pass, {len(mod_lost)} lost"
        )
        lost[module] = {t: vres.get(t, "missing") for t in mod_lost}
        rows.append(
            dict(
                module=module,
                tests=len(ids),
                pass_native=count(nres, "pass"),
                pass_vkernel=count(vres, "pass"),
                lost=len(mod_lost),
                gained=sum(1 for t in ids if vres.get(t) == "pass" and nres.get(t) != "pass"),
                status_native=nr.status_text(),
                status_vkernel=vr.status_text(),
                secs_native=round(nr.secs, 1),
                secs_vkernel=round(vr.secs, 1),
            )
        )
    return rows, lost


def count(res, outcome):
    return sum(1 for v in res.values() if v == outcome)


# ---- stress-ng --------------------------------------------------------------

METRIC = re.compile(r"metrc: \[\d+\]\s+(\S+)\s+(\d+)\s+([\d.]+)\s")


def stress_argv(stressor, secs):
    return [
        STRESS_NG,
        f"--{stressor}",
        "1",
        "--timeout",
        f"{secs}s",
        "--verify",
        "--metrics-brief",
        # iomix, hdd and friends write files in the current directory;
        # keep them small.
        "--temp-path",
        "/tmp",
    ] + STRESSOR_OPTS.get(stressor, [])


def run_stressor(stressor, where, ctx):
    d = ctx.out / "stress-ng" / where
    d.mkdir(parents=True, exist_ok=True)
    argv = stress_argv(stressor, ctx.stress_secs)
    # stress-ng ends its stressors itself at --timeout; 30 s more is for
    # start-up, reaping and a slow vproc; beyond that it hangs.
    timeout = ctx.stress_secs + 30
    if where == "vkernel":
        argv = vkernel_argv(ctx.vkernel, ctx.cpus, ctx.mem, [], argv)
    r = run_cmd(argv, timeout, ctx.work, d / f"{stressor}.log")
    ops = None
    for m in METRIC.finditer(r.output):
        if m.group(1) == stressor:
            ops = int(m.group(2))
    return r, ops


def first_failure(text):
    """stress-ng's first `fail:`/`error:` line, without its prefix, for the
    table's notes."""
    for line in text.splitlines():
        m = re.match(r"stress-ng: (?:fail|error):\s+\[\d+\]\s*(.*)", line)
        if m:
            return m.group(1)[:160]
    return ""


def stress_suite(ctx):
    rows = []
    for s in ctx.stressors:
        nr, nops = run_stressor(s, "native", ctx)
        vr, vops = run_stressor(s, "vkernel", ctx)
        ratio = None
        if nops and vops is not None:
            ratio = vops / nops
        rows.append(
            dict(
                stressor=s,
                status_native=nr.status_text(),
                status_vkernel=vr.status_text(),
                ops_native=nops,
                ops_vkernel=vops,
                ratio=ratio,
                secs_vkernel=round(vr.secs, 1),
                note=first_failure(vr.output) if vr.status != nr.status else "",
            )
        )
        log(
            f"   {s}: native {nr.status_text()} ({fmt_ops(nops)} ops), "
            f"vkernel {vr.status_text()} ({fmt_ops(vops)} ops) in {vr.secs:.1f}s"
        )
    return rows


def fmt_ops(n):
    return "-" if n is None else str(n)


def stressor_failed(row):
    """A stressor fails under vkernel when its status differs from the
    native one (stress-ng exits 0 on success, 2 on a failed --verify, 3
    when a stressor could not run, 4 when not implemented)."""
    return row["status_vkernel"] != row["status_native"]


# ---- tables -------------------------------------------------------------------


def cpython_table(rows):
    lines = [
        "| module | tests | pass native | pass vkernel | lost | status native/vkernel | secs native/vkernel |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['module']} | {r['tests']} | {r['pass_native']} | {r['pass_vkernel']} | {r['lost']} "
            f"| {r['status_native']}/{r['status_vkernel']} | {r['secs_native']}/{r['secs_vkernel']} |"
        )
    t = [sum(r[k] for r in rows) for k in ("tests", "pass_native", "pass_vkernel", "lost")]
    lines.append(f"| **total** | {t[0]} | {t[1]} | {t[2]} | {t[3]} | | |")
    return "\n".join(lines)


def stress_table(rows):
    lines = [
        "| stressor | status native | status vkernel | bogo-ops native | bogo-ops vkernel | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['stressor']} | {r['status_native']} | {r['status_vkernel']} "
            f"| {fmt_ops(r['ops_native'])} | {fmt_ops(r['ops_vkernel'])} | {ratio} |"
        )
    notes = [f"- {r['stressor']}: {r['note'] or 'status ' + r['status_vkernel']}" for r in rows if stressor_failed(r)]
    if notes:
        lines += ["", "Under vkernel, first failure of each failing stressor:", ""] + notes
    return "\n".join(lines)


# ---- the baseline -------------------------------------------------------------
#
# One entry a line:  `cpython MODULE TEST_ID`  or  `stress-ng STRESSOR`.
# `#` starts a comment.


def read_baseline(path):
    entries = set()
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entries.add(tuple(line.split()))
    return entries


def current_entries(lost, srows):
    e = set()
    for module, tests in lost.items():
        for t in tests:
            e.add(("cpython", module, t))
    for r in srows:
        if stressor_failed(r):
            e.add(("stress-ng", r["stressor"]))
    return e


def write_baseline(path, entries, lost, srows, ctx):
    old = read_baseline(path)
    # Keep the entries of modules and stressors this run did not cover.
    ran = {("cpython", m) for m in ctx.modules} | {("stress-ng", s) for s in ctx.stressors}
    keep = {e for e in old if e[:2] not in ran}
    entries = sorted(entries | keep)
    outcome = {("cpython", m, t): o for m, ts in lost.items() for t, o in ts.items()}
    status = {("stress-ng", r["stressor"]): f"native {r['status_native']}, vkernel {r['status_vkernel']}" for r in srows}
    lines = [
        "# Known losses under vkernel: CPython tests that pass natively but not as a",
        "# vproc, stress-ng stressors whose exit status differs from native.",
        "# ci/suites.py fails CI only on a loss NOT listed here. Refresh with",
        "#   ci/suites.py --budget long --update-baseline",
        "# (see docs/SUITES.md). Format: `cpython MODULE TEST_ID` | `stress-ng STRESSOR`.",
        f"# Last refreshed with budget {ctx.budget} on {time.strftime('%Y-%m-%d', time.gmtime())}.",
    ]
    for e in entries:
        why = outcome.get(e) or status.get(e) or ""
        lines.append(" ".join(e) + (f"  # {why}" if why else ""))
    path.write_text("\n".join(lines) + "\n")


def compare(now, base, modules, stressors):
    """(new losses, improvements): this run's entries not in the baseline,
    and the baseline's entries for what this run covered that it no longer
    has."""
    ran = {("cpython", m) for m in modules} | {("stress-ng", s) for s in stressors}
    base_here = {e for e in base if e[:2] in ran}
    return now - base_here, base_here - now


def rerun_new(new, ctx):
    """Re-run each new loss once under vkernel; return those still lost."""
    still = set()
    by_module = {}
    for e in new:
        if e[0] == "cpython":
            by_module.setdefault(e[1], []).append(e[2])
        else:
            r, ops = run_stressor(e[1], "vkernel-rerun", ctx)
            native = next(x for x in ctx.srows if x["stressor"] == e[1])
            if r.status_text() != native["status_native"]:
                still.add(e)
            else:
                log(f"   flaky: stress-ng {e[1]} passed its re-run")
    for module, tests in by_module.items():
        _, res = run_module(module, "vkernel", ctx, match=tests)
        for t in tests:
            if res.get(t) == "pass":
                log(f"   flaky: {module} {t} passed its re-run")
            else:
                still.add(("cpython", module, t))
    return still


# ---- main -------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default=os.environ.get("VKERNEL_SUITES", "short"), choices=["short", "long", "off"])
    ap.add_argument("--vkernel", type=Path, default=Path(os.environ.get("VKERNEL_BIN", DEFAULT_VKERNEL)))
    ap.add_argument("--out", type=Path, default=None, help="results directory (default: a new one under /tmp)")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    ap.add_argument("--update-baseline", action="store_true", help="write the losses of this run as the new baseline")
    ap.add_argument("--modules", help="comma-separated CPython modules instead of the budget's ('' for none)")
    ap.add_argument("--stressors", help="comma-separated stress-ng stressors instead of the budget's ('' for none)")
    ap.add_argument("--cpus", type=int, default=2, help="vCPUs of the vkernel (default 2)")
    ap.add_argument("--mem", type=int, default=2048, help="vkernel RAM in MiB (default 2048)")
    ap.add_argument("--module-timeout", type=int, help="seconds per module run (default by budget)")
    ap.add_argument("--stress-secs", type=int, help="seconds per stressor (default by budget)")
    ctx = ap.parse_args()
    if ctx.budget == "off":
        log("suites: VKERNEL_SUITES=off, nothing run")
        return 0
    b = BUDGETS[ctx.budget]
    ctx.modules = b["modules"] if ctx.modules is None else [m for m in ctx.modules.split(",") if m]
    ctx.stressors = b["stressors"] if ctx.stressors is None else [s for s in ctx.stressors.split(",") if s]
    ctx.module_timeout = ctx.module_timeout or b["module_timeout"]
    ctx.stress_secs = ctx.stress_secs or b["stress_secs"]
    if not ctx.vkernel.exists():
        log(f"suites: {ctx.vkernel} missing (cargo build --release --example vkernel)")
        return 2
    missing = []
    if ctx.modules and not Path("/usr/lib/python3.11/test/regrtest.py").exists():
        missing.append("libpython3.11-testsuite (CPython's test package for /usr/bin/python3)")
    if ctx.stressors and not Path(STRESS_NG).exists():
        missing.append("stress-ng")
    if missing:
        log("suites: missing " + " and ".join(missing) + "; apt-get install them")
        return 2
    ctx.out = ctx.out or Path(tempfile.mkdtemp(prefix="vkernel-suites-"))
    ctx.out.mkdir(parents=True, exist_ok=True)
    # The runs' working directory: stress-ng and the test runner may leave
    # files in it natively.
    ctx.work = ctx.out / "work"
    ctx.work.mkdir(exist_ok=True)
    t0 = time.monotonic()
    log(f"== suites ({ctx.budget}): {len(ctx.modules)} CPython modules, {len(ctx.stressors)} stressors; results in {ctx.out}")

    crows, lost = cpython_suite(ctx) if ctx.modules else ([], {})
    ctx.srows = stress_suite(ctx) if ctx.stressors else []

    report = []
    if crows:
        report += ["### CPython regression tests (passing natively / under vkernel)", "", cpython_table(crows), ""]
    if ctx.srows:
        report += [
            f"### stress-ng stressors (`--verify`, 1 instance, {ctx.stress_secs} s each)",
            "",
            stress_table(ctx.srows),
            "",
        ]
    (ctx.out / "tables.md").write_text("\n".join(report))
    with open(ctx.out / "lost.txt", "w") as f:
        for module, tests in lost.items():
            for t, o in sorted(tests.items()):
                f.write(f"{module} {t} {o}\n")
    (ctx.out / "results.json").write_text(json.dumps(dict(cpython=crows, lost=lost, stress=ctx.srows), indent=1))
    log("")
    log("\n".join(report))
    log(f"lost test ids: {ctx.out / 'lost.txt'}")

    now = current_entries(lost, ctx.srows)
    if ctx.update_baseline:
        write_baseline(ctx.baseline, now, lost, ctx.srows, ctx)
        log(f"== baseline written: {ctx.baseline} ({len(now)} entries from this run)")
        log(f"== suites took {time.monotonic() - t0:.0f}s")
        return 0

    new, improved = compare(now, read_baseline(ctx.baseline), ctx.modules, ctx.stressors)
    if improved:
        log("")
        log(f"!! IMPROVED: {len(improved)} baseline entries now pass under vkernel (refresh the baseline):")
        for e in sorted(improved):
            log("!!   " + " ".join(e))
    status = 0
    if new:
        log("")
        log(f"== {len(new)} new losses; re-running them once under vkernel")
        still = rerun_new(new, ctx)
        if still:
            log("")
            log(f"FAIL: {len(still)} NEW losses under vkernel (not in {ctx.baseline.name}):")
            for e in sorted(still):
                log("FAIL:   " + " ".join(e))
            status = 1
    log(f"== suites ({ctx.budget}) took {time.monotonic() - t0:.0f}s: " + ("FAIL" if status else "no new losses"))
    return status


if __name__ == "__main__":
    sys.exit(main())
