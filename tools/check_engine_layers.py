#!/usr/bin/env python3
"""Fail if the engine crate's modules import each other in a cycle.

Reads every `crate::<module>` reference in engine/src (code only: comments,
including doc comments, are ignored; `*tests.rs` files are ignored because
tests may reach anywhere), builds the module graph and prints any cycle.
Files under engine/src/<module>/ count as part of <module>.

Usage: tools/check_engine_layers.py [--layers] [engine/src]
(--layers prints the modules grouped by layer, bottom first)
"""

import re
import sys
from pathlib import Path

REFERENCE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# Rust char literals ('"', '\\', '\u{..}', b'x'); a lifetime ('a) has no closing quote.
CHAR = re.compile(r"'(?:\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^'\\\n])'")
RAW_STRING = re.compile(r'r(#*)"')


def code_only(text: str) -> str:
    """`text` with comments, strings and char literals blanked out."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif (raw := RAW_STRING.match(text, i)) and (i == 0 or not text[i - 1].isalnum() or text[i - 1] == "b"):
            close = '"' + raw.group(1)
            end = text.find(close, raw.end())
            i = n if end < 0 else end + len(close)
            out.append('""')
        elif text[i] == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif text[i] == "'" and (char := CHAR.match(text, i)):
            i = char.end()
            out.append("' '")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def module_of(src: Path, path: Path) -> str:
    rel = path.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


def graph(src: Path) -> dict[str, set[str]]:
    """Module -> modules it references, for every module in `src`."""
    edges: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.rs")):
        if path.name.endswith("tests.rs"):
            continue
        module = module_of(src, path)
        if module == "lib":
            continue
        text = code_only(path.read_text())
        targets = edges.setdefault(module, set())
        for name in REFERENCE.findall(text):
            if name != module:
                targets.add(name)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def layers(edges: dict[str, set[str]]) -> list[list[str]]:
    """Modules grouped by height: each only uses modules in lower groups."""
    height: dict[str, int] = {}

    def h(node: str) -> int:
        if node not in height:
            height[node] = 1 + max((h(n) for n in edges.get(node, ())), default=-1)
        return height[node]

    for node in edges:
        h(node)
    out: list[list[str]] = [[] for _ in range(max(height.values(), default=-1) + 1)]
    for node, level in sorted(height.items()):
        out[level].append(node)
    return out


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = Path(args[0] if args else "engine/src")
    if not src.is_dir():
        print(f"{src}: not a directory", file=sys.stderr)
        return 2
    edges = graph(src)
    cycle = find_cycle(edges)
    if cycle:
        print("engine import cycle: " + " -> ".join(cycle), file=sys.stderr)
        print(
            "move the shared item to a lower module so dependencies flow one way "
            "(see 'Module layers' in engine/src/lib.rs)",
            file=sys.stderr,
        )
        return 1
    if "--layers" in sys.argv:
        for level, modules in enumerate(layers(edges)):
            print(f"{level}: {' '.join(modules)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
