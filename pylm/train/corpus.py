"""An English training corpus available offline on any machine with Python: the documentation
CPython ships with itself.

  * the pydoc topic pages (``pydoc_data.topics``: the language-reference sections that
    ``help("assert")`` shows, ~460 KB), then
  * the docstrings (longer than 80 characters) of the standard library's modules, classes and
    functions, read with ``ast`` from the installed sources without importing them (~1.5 MB;
    test suites, idlelib and lib2to3 skipped), in path order.

    python -m pylm.train.corpus pydocs.txt              # both parts
    python -m pylm.train.corpus pydocs.txt --topics     # the topic pages only
"""

from __future__ import annotations

import ast
import sys
import sysconfig
from pathlib import Path

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3"}


def python_topics_text() -> str:
    """The pydoc topic pages, in sorted topic order, separated by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() + "\n" for k in sorted(topics))


def stdlib_trees():
    """The ast.Module of each source of the installed standard library, path order (test
    suites, idlelib and lib2to3 skipped, and files that do not parse)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS.intersection(path.relative_to(root).parts):
            continue
        try:
            yield ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue


def stdlib_docstrings_text(min_chars: int = 80) -> str:
    """Docstrings of the installed standard library (module, class, function), path order."""
    parts = []
    for tree in stdlib_trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > min_chars:
                    parts.append(doc.strip() + "\n")
    return "\n\n".join(parts)


def python_docs_text(docstrings: bool = True) -> str:
    """The topic pages, then (by default) the standard library's docstrings."""
    text = python_topics_text()
    return text + "\n\n" + stdlib_docstrings_text() if docstrings else text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    paths = [a for a in argv if not a.startswith("--")]
    if len(paths) != 1:
        print("usage: python -m pylm.train.corpus OUT.txt [--topics]", file=sys.stderr)
        return 2
    text = python_docs_text(docstrings="--topics" not in argv)
    Path(paths[0]).write_text(text, encoding="utf-8")
    print(f"{paths[0]}: {len(text):,} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
