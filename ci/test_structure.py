"""Unit tests of ci/structure.py's pure logic (run by .ci/run through
`unittest discover -s ci -p 'test_*.py'`)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import structure  # noqa: E402


class CodeLines(unittest.TestCase):
    def test_a_trailing_test_module_is_not_counted(self):
        src = ["fn a() {}", "", "#[cfg(test)]", "mod tests {", "    fn t() {}", "}"]
        self.assertEqual(structure.code_lines(src), ["fn a() {}", ""])

    def test_a_cfg_test_item_that_is_no_module_is_counted(self):
        src = ["#[cfg(test)]", "fn helper() {}", "fn b() {}"]
        self.assertEqual(structure.code_lines(src), src)


class LongFunctions(unittest.TestCase):
    def body(self, n):
        return ["pub fn f() {"] + ["    x();"] * n + ["}"]

    def test_a_function_at_the_limit_passes(self):
        src = self.body(structure.MAX_FN - 2)
        self.assertEqual(structure.long_functions("a.rs", src), [])

    def test_a_function_over_the_limit_is_named_with_its_length(self):
        src = ["// header"] + self.body(structure.MAX_FN)
        out = structure.long_functions("a.rs", src)
        self.assertEqual(out, [("a.rs", "f", 2, structure.MAX_FN + 2)])

    def test_braces_in_strings_and_comments_do_not_count(self):
        src = ["fn g() {", '    let s = "}}}";', "    // }", "    let c = '}';", "}",
               "fn h() {}"]
        self.assertEqual(structure.long_functions("a.rs", src), [])

    def test_a_declaration_without_body_is_skipped(self):
        src = ["trait T {", "    fn d(&self);", "}"] + self.body(3)
        self.assertEqual(structure.long_functions("a.rs", src), [])


class ModPath(unittest.TestCase):
    def test_paths(self):
        self.assertEqual(structure.mod_path(os.path.join("kernel", "fast", "mod.rs")),
                         ["kernel", "fast"])
        self.assertEqual(structure.mod_path("exec.rs"), ["exec"])
        self.assertEqual(structure.mod_path(os.path.join("kernel", "run.rs")),
                         ["kernel", "run"])


class CastBaseline(unittest.TestCase):
    def test_the_file_level_allow_is_recognised(self):
        self.assertTrue(structure.allows_casts("//! doc\n" + structure.CAST_ALLOW + " // why\n"))
        self.assertFalse(structure.allows_casts("let x = y as u32;\n"))

    def test_only_files_outside_the_baseline_are_violations(self):
        self.assertEqual(structure.cast_allow_violations(["a.rs", "b.rs"], {"a.rs"}), ["b.rs"])
        self.assertEqual(structure.cast_allow_violations(["a.rs"], {"a.rs", "c.rs"}), [])

    def test_a_crate_root_may_never_allow_them(self):
        self.assertEqual(structure.cast_allow_violations(["x/src/lib.rs"], {"x/src/lib.rs"}),
                         ["x/src/lib.rs"])


if __name__ == "__main__":
    unittest.main()
