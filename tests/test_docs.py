"""The documents the code cites exist in the repository, and the README stays a guide."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"[\w./-]*\w\.md\b")


def _cited() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder in ("src", "tests", "bench", "scripts"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", "") or not path.is_file() or "__pycache__" in path.parts:
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            for name in CITED.findall(text):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def _exists(name: str, citing: str) -> bool:
    candidates = [ROOT / name, ROOT / "docs" / name, (ROOT / citing).parent / name]
    return any(c.is_file() for c in candidates)


def test_every_cited_document_exists() -> None:
    missing = {
        name: where
        for name, where in _cited().items()
        if not all(_exists(name, w) for w in where) and name != "test_docs.md"
    }
    assert not missing, f"cited but not in the repository: {missing}"


def test_the_readme_is_a_guide_and_links_into_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 16_000
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link
