"""Unit tests of ci/suites.py's parsing and baseline logic (no KVM, no
suites run): `/usr/bin/python3 -m unittest discover -s ci -p 'test_*.py'`."""

import tempfile
import unittest
from pathlib import Path

import suites

JUNIT = """<testsuites tests="5" errors="1" failures="1"><testsuite tests="5">
<testcase name="test.test_x.A.test_ok" status="run" result="completed" time="0.1" />
<testcase name="test.test_x.A.test_fail" status="run" result="completed"><failure>boom</failure></testcase>
<testcase name="test.test_x.A.test_err" status="run" result="completed"><error>oops</error></testcase>
<testcase name="test.test_x.A.test_skip" status="run" result="completed"><skipped>no</skipped></testcase>
<testcase name="test.test_x.A.test_sub" status="run" result="completed" />
<testcase name="test.test_x.A.test_sub" status="run" result="completed"><failure>sub</failure></testcase>
</testsuite></testsuites>"""

VERBOSE = """0:00:00 load avg: 0.00 [1/1] test_x
test_ok (test.test_x.A.test_ok) ... ok
test_fail (test.test_x.A.test_fail) ... FAIL
test_err (test.test_x.A.test_err) ... ERROR
test_skip (test.test_x.A.test_skip) ... skipped 'no'
test_chatty (test.test_x.A.test_chatty) ... printed something
ok
test_outer (test.test_x.A.test_outer) ... test_inner (__main__.B.test_inner) ... ERROR
test_unfinished (test.test_x.A.test_unfinished) ... vkernel: unimplemented syscall 53
test_docstring (test.test_x.A.test_docstring)
A test with a docstring ... ok

======================================================================
ERROR: test_err (test.test_x.A.test_err)
----------------------------------------------------------------------
FAIL: test_ok (test.test_x.A.test_ok)
"""

METRICS = """stress-ng: metrc: [17133] stressor       bogo ops real time  usr time  sys time   bogo ops/s     bogo ops/s
stress-ng: metrc: [17133]                           (secs)    (secs)    (secs)   (real time) (usr+sys time)
stress-ng: metrc: [17133] fork               1176      2.00      0.21      0.19       587.02        2935.03
"""


class Parsing(unittest.TestCase):
    def test_junit_outcomes_and_repeated_ids_keep_the_worst(self):
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
            f.write(JUNIT)
            f.flush()
            r = suites.parse_junit(f.name)
        self.assertEqual(r["test.test_x.A.test_ok"], "pass")
        self.assertEqual(r["test.test_x.A.test_fail"], "fail")
        self.assertEqual(r["test.test_x.A.test_err"], "error")
        self.assertEqual(r["test.test_x.A.test_skip"], "skip")
        self.assertEqual(r["test.test_x.A.test_sub"], "fail")

    def test_verbose_fallback(self):
        r = suites.parse_verbose(VERBOSE, "__main__.", "test.test_y.")
        self.assertEqual(
            r,
            {
                "test.test_x.A.test_ok": "pass",
                "test.test_x.A.test_fail": "fail",
                "test.test_x.A.test_err": "error",
                "test.test_x.A.test_skip": "skip",
                # its outcome came after what it printed
                "test.test_x.A.test_chatty": "pass",
                # a script's `__main__.` ids, renamed
                "test.test_y.B.test_inner": "error",
                "test.test_x.A.test_docstring": "pass",
                # test_outer and test_unfinished never finished: missing
            },
        )

    def test_metrics_line(self):
        m = [(x.group(1), int(x.group(2))) for x in suites.METRIC.finditer(METRICS)]
        self.assertEqual(m, [("fork", 1176)])

    def test_first_failure(self):
        text = "stress-ng: info:  [1] x\nstress-ng: fail:  [101] clock: timer_create failed\n"
        self.assertEqual(suites.first_failure(text), "clock: timer_create failed")


class Baseline(unittest.TestCase):
    def test_new_losses_and_improvements_only_for_what_ran(self):
        base = {
            ("cpython", "test_a", "t1"),
            ("cpython", "test_a", "t2"),
            ("cpython", "test_b", "t9"),  # not run: neither new nor improved
            ("stress-ng", "flock"),
        }
        now = {("cpython", "test_a", "t1"), ("cpython", "test_a", "t3"), ("stress-ng", "fork")}
        new, improved = suites.compare(now, base, ["test_a"], ["fork", "flock"])
        self.assertEqual(new, {("cpython", "test_a", "t3"), ("stress-ng", "fork")})
        self.assertEqual(improved, {("cpython", "test_a", "t2"), ("stress-ng", "flock")})

    def test_read_baseline_ignores_comments(self):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "b.txt"
            p.write_text("# header\ncpython test_a t1  # fail\n\nstress-ng flock # native 0\n")
            self.assertEqual(suites.read_baseline(p), {("cpython", "test_a", "t1"), ("stress-ng", "flock")})
            self.assertEqual(suites.read_baseline(Path(d) / "missing"), set())


class BaselineWrite(unittest.TestCase):
    def test_rewrites_what_ran_keeps_the_rest_with_comments(self):
        import types

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "b.txt"
            p.write_text("cpython test_a t1  # error: old\ncpython test_b t9  # fail: kept\nstress-ng flock  # x\n")
            lost = {"test_a": {"t2": ("error", "test/test_a.py:3 `f()`: OSError: [Errno 22]")}}
            srows = [dict(stressor="flock", status_native="0", status_vkernel="0", note="")]
            ctx = types.SimpleNamespace(modules=["test_a"], stressors=["flock"], budget="long")
            now = suites.current_entries(lost, srows)
            suites.write_baseline(p, now, lost, srows, ctx)
            comments = {}
            self.assertEqual(
                suites.read_baseline(p, comments), {("cpython", "test_a", "t2"), ("cpython", "test_b", "t9")}
            )
            self.assertEqual(comments[("cpython", "test_b", "t9")], "fail: kept")
            self.assertIn("OSError: [Errno 22]", comments[("cpython", "test_a", "t2")])


class Why(unittest.TestCase):
    def test_last_frame_in_the_test_package_and_the_exception(self):
        import xml.etree.ElementTree as ET

        e = ET.fromstring(
            '<error type="OSError" message="OSError: [Errno 22] Invalid argument&#10;">Traceback:\n'
            '  File "/usr/lib/python3.11/unittest/case.py", line 579, in _callTestMethod\n    if method():\n'
            '  File "/usr/lib/python3.11/test/test_fcntl.py", line 140, in test_fcntl_64_bit\n'
            "    fcntl.fcntl(fd, cmd, flags)\nOSError: [Errno 22] Invalid argument\n</error>"
        )
        self.assertEqual(
            suites.why(e), "test/test_fcntl.py:140 `fcntl.fcntl(fd, cmd, flags)`: OSError: [Errno 22] Invalid argument"
        )


class Timeout(unittest.TestCase):
    def test_a_hang_is_killed_and_reported(self):
        with tempfile.TemporaryDirectory() as d:
            r = suites.run_cmd(["/bin/sh", "-c", "echo started; sleep 30"], 1, d, Path(d) / "log")
            self.assertTrue(r.timed_out)
            self.assertEqual(r.status_text(), "timeout")
            self.assertIn("started", r.output)
            self.assertLess(r.secs, 20)

    def test_exit_status_and_signal(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(suites.run_cmd(["/bin/sh", "-c", "exit 3"], 10, d, Path(d) / "l").status, 3)
            self.assertEqual(suites.run_cmd(["/bin/sh", "-c", "kill -9 $$"], 10, d, Path(d) / "l").status, 137)


if __name__ == "__main__":
    unittest.main()
