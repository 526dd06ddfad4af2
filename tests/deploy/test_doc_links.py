"""Every relative link and #anchor in the README and docs/ resolves.

The README points into docs/ by anchor (`docs/policy.md#who-is-calling`);
moving or renaming a heading must not leave a reader at the top of a page.
Anchors follow GitHub's rule: lower-case, punctuation dropped, spaces to
hyphens, repeats numbered `-1`, `-2`.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose_lines(path: Path):
    """Lines outside fenced code blocks."""
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links():
    for doc in DOCS:
        if not doc.exists():
            continue
        # a link's text may wrap; inline code may show link syntax without being a link
        text = re.sub(r"`[^`\n]*`", "", "\n".join(prose_lines(doc)))
        for target in LINK.findall(text):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                yield doc, target


@pytest.mark.parametrize("doc,target", list(links()), ids=lambda v: str(v).replace(str(ROOT) + "/", ""))
def test_link_resolves(doc: Path, target: str):
    file_part, _, anchor = target.partition("#")
    dest = (doc.parent / file_part).resolve() if file_part else doc
    assert dest.exists(), f"{doc.relative_to(ROOT)}: {target}: no such file"
    if anchor:
        assert dest.suffix == ".md", f"{doc.relative_to(ROOT)}: {target}: anchor into a non-Markdown file"
        assert anchor in anchors(dest), f"{doc.relative_to(ROOT)}: {target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}"
