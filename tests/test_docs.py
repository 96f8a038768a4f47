"""The documentation against the code: the config-keys table against the schemas, the README's
size and test command, and every relative link in README.md and docs/*.md.

Quick: reads files only (the schemas are imported, which loads no TensorFlow or Hydra).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from attnlab.engine import config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIG_PAGE = ROOT / "docs" / "cli-and-config.md"
CI_SCRIPT = ROOT / ".ci" / "run"
README_LIMIT = 16384  # bytes: the README is a front door; reference lives in docs/
# The header of the config-keys table in docs/cli-and-config.md.
TABLE_HEADER = "| key | default | allowed |"
GROUPS = {
    "data": config.DataConfig,
    "model": config.ModelConfig,
    "trainer": config.TrainerConfig,
    "logger": config.LoggerConfig,
}
TOP_LEVEL = ("objective", "claims", "seeds")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def field_default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    assert field.default_factory is not dataclasses.MISSING, field.name
    return field.default_factory()


def schema_defaults() -> dict[str, str]:
    """Dotted key -> its default as the table shows it (str(value)), for every config key."""
    out = {}
    for group, schema in GROUPS.items():
        for field in dataclasses.fields(schema):
            out[f"{group}.{field.name}"] = str(field_default(field))
    top = {f.name: f for f in dataclasses.fields(config.ExperimentConfig)}
    for name in TOP_LEVEL:
        out[name] = str(field_default(top[name]))
    return out


def field_comments(schema: type) -> dict[str, str]:
    """Field name -> the comment lines right above it in attnlab/engine/config.py, joined."""
    source = Path(config.__file__).read_text()
    lines = source.splitlines()
    node = next(
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.ClassDef) and n.name == schema.__name__
    )
    out = {}
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            block: list[str] = []
            i = statement.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                block.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            out[statement.target.id] = " ".join(block)
    return out


def table_rows() -> dict[str, str]:
    """Key -> default of the config-keys table in docs/cli-and-config.md."""
    lines = CONFIG_PAGE.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER)]
    assert len(starts) == 1, f"one table starting {TABLE_HEADER!r} in {CONFIG_PAGE.name}"
    rows: dict[str, str] = {}
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        key, default = cells[0].strip("`"), cells[1].strip("`")
        assert key not in rows, f"{key} listed twice"
        rows[key] = default
    return rows


def test_every_schema_field_has_a_comment():
    """The table quotes these comments: a field without one would have an empty row."""
    schemas = [*GROUPS.values(), config.ExperimentConfig]
    missing = [
        f"{schema.__name__}.{name}"
        for schema in schemas
        for name, comment in field_comments(schema).items()
        if not comment and (schema is not config.ExperimentConfig or name in TOP_LEVEL)
    ]
    assert missing == []


def test_config_table_lists_every_key_with_its_default():
    expected, shown = schema_defaults(), table_rows()
    assert sorted(set(expected) - set(shown)) == [], "keys missing from the table"
    assert sorted(set(shown) - set(expected)) == [], "keys in the table but not in the schemas"
    wrong = {k: (shown[k], expected[k]) for k in expected if shown[k] != expected[k]}
    assert wrong == {}, "(table, schema) defaults that differ"


def test_readme_is_at_most_16_kb():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move reference to docs/"


def ci_test_command() -> str:
    """The line of .ci/run between its "verbatim" markers."""
    lines = CI_SCRIPT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "verbatim" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("# ---"))
    body = [line for line in lines[start + 1 : end] if line.strip()]
    assert len(body) == 1, body
    return body[0]


def test_readme_test_command_is_the_one_ci_runs():
    command = ci_test_command()
    readme = README.read_text().splitlines()
    candidates = [line for line in readme if line.startswith("python3.11 -m venv")]
    assert command in candidates, f"README.md lacks CI's test command: {command}"
    assert any("pytest" in line for line in candidates)
    assert [line for line in candidates if "pytest" in line] == [command]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def strip_code_blocks(text: str) -> str:
    """The text without fenced code blocks and inline code (they may hold `[x](y)`)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files_that_exist(page):
    broken = []
    for match in LINK.finditer(strip_code_blocks(page.read_text())):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []


def test_the_link_checker_sees_links_and_anchors():
    text = "see [a](docs/x.md#two-words) and `[b](not/a/link)`"
    assert [m.group(1) for m in LINK.finditer(strip_code_blocks(text))] == ["docs/x.md#two-words"]
    assert slug("`objective` and Optuna") == "objective-and-optuna"
    assert slug("summary.csv, column by column") == "summarycsv-column-by-column"
