"""Tests of tools/check_engine_layers.py on small made-up crates.

Run by `make lint`: python3 -m unittest discover -s tools -p 'test_*.py'
"""

import tempfile
import unittest
from pathlib import Path

import check_engine_layers as layers


def crate(files: dict[str, str]) -> Path:
    root = Path(tempfile.mkdtemp())
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


class CheckEngineLayers(unittest.TestCase):
    def test_one_way_dependencies_pass(self):
        src = crate(
            {
                "lib.rs": "pub mod a; pub mod b;",
                "a.rs": "pub fn f() {}",
                "b.rs": "use crate::a::f;",
            }
        )
        edges = layers.graph(src)
        self.assertEqual(edges, {"a": set(), "b": {"a"}})
        self.assertIsNone(layers.find_cycle(edges))
        self.assertEqual(layers.layers(edges), [["a"], ["b"]])

    def test_cycle_is_named(self):
        src = crate(
            {
                "a.rs": "use crate::b::g;",
                "b.rs": "pub use crate::c::h;",
                "c.rs": "fn h() { crate::a::f() }",
            }
        )
        self.assertEqual(layers.find_cycle(layers.graph(src)), ["a", "b", "c", "a"])

    def test_comments_strings_and_test_files_do_not_count(self):
        src = crate(
            {
                "a.rs": "pub fn f() {}",
                "b.rs": (
                    "//! See [`crate::a`].\n"
                    "/* crate::a */\n"
                    'const S: &str = "crate::a \\" crate::a";\n'
                    "const R: &str = r#\"crate::a\"#;\n"
                    "const Q: char = '\"'; use crate::c;\n"
                ),
                "a/tests.rs": "use crate::b;",
                "c.rs": "",
            }
        )
        self.assertEqual(layers.graph(src)["b"], {"c"})
        self.assertEqual(layers.graph(src)["a"], set())

    def test_submodule_files_belong_to_their_module(self):
        src = crate({"a.rs": "mod inner;", "a/inner.rs": "use crate::b;", "b.rs": ""})
        self.assertEqual(layers.graph(src)["a"], {"b"})


if __name__ == "__main__":
    unittest.main()
