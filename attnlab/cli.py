"""Pure rules of the `attnlab` command, kept apart from Hydra's entry point to test them alone."""

from __future__ import annotations

from collections.abc import Sequence


def version_line(argv: Sequence[str], version: str) -> str | None:
    """`attnlab <version>` if the command line asks for it (`attnlab --version`), else None."""
    return f"attnlab {version}" if "--version" in argv else None
