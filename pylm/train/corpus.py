"""An English training corpus available offline on any machine with Python: the Python
documentation's topic pages that CPython ships in ``pydoc_data.topics`` (about 460 KB of prose
and examples: the language reference sections that `help("assert")` shows).

    python -m pylm.train.corpus pydocs.txt       # writes the corpus, prints its size
"""

from __future__ import annotations

import sys
from pathlib import Path


def python_docs_text() -> str:
    """The pydoc topic pages, in sorted topic order, separated by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() + "\n" for k in sorted(topics))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m pylm.train.corpus OUT.txt", file=sys.stderr)
        return 2
    text = python_docs_text()
    Path(argv[0]).write_text(text, encoding="utf-8")
    print(f"{argv[0]}: {len(text):,} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
