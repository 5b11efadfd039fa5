"""The README's table of config groups and options, generated from conf/: `python -m digitlab.cli.config_table`
prints it; `--write` puts it into README.md between its markers. A test fails when the README is stale."""

from __future__ import annotations

import sys
from pathlib import Path

from digitlab.config.location import config_dir

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def describe(path: Path) -> str:
    """The first sentence of a YAML file's leading comment (Hydra directives skipped)."""
    words = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text.startswith("#"):
            break
        if not text.startswith("# @package"):
            words.append(text.lstrip("#").strip())
    comment = " ".join(words)
    end = comment.find(". ")
    return comment if end < 0 else comment[: end + 1]


def table(root: Path | None = None) -> str:
    root = root or config_dir()
    defaults = {}
    for line in (root / "config.yaml").read_text().splitlines():
        key, sep, value = line.strip().removeprefix("- ").partition(":")
        if sep and "/" not in key and value.strip() and not line.startswith(" " * 4):
            defaults[key.strip()] = value.split("#")[0].strip()
    rows = ["| group | option | what it is |", "|---|---|---|"]
    for group in sorted(p for p in root.rglob("*") if p.is_dir() and any(p.glob("*.yaml"))):
        name = group.relative_to(root).as_posix()
        for option in sorted(group.glob("*.yaml")):
            mark = " (default)" if defaults.get(name) == option.stem else ""
            rows.append(f"| `{name}` | `{option.stem}`{mark} | {describe(option)} |")
    return "\n".join(rows) + "\n"


def in_readme(readme: str, generated: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{generated}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    generated = table()
    if "--write" in argv:
        readme = config_dir().parent / "README.md"
        readme.write_text(in_readme(readme.read_text(), generated))
    else:
        print(generated, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
