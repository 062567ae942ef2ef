"""docs/plugins.md, the plugin author's guide, against the code it describes: every hook with its signature and no
hook that does not exist, every ModelSpec field, the test kit's public API and checks, the `zoo` commands its examples
run, and Python examples that compile."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
from _plugin_helpers import REPO

import zoo
from zoo import hookspecs, testing

DOC = REPO / "docs" / "plugins.md"
TEXT = DOC.read_text(encoding="utf-8")

HOOKS = {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "zoo_spec")}


def _fenced(languages: tuple[str, ...]) -> list[str]:
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", TEXT, re.M | re.S) if m.group(1) in languages]


def _section(title: str) -> str:
    start = TEXT.index(f"\n## {title}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end != -1 else None]


def test_the_hookspecs_are_found():
    assert set(HOOKS) >= {"zoo_register_models", "zoo_register_commands", "zoo_on_epoch_end"}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(HOOKS[hook]).parameters)
    heading = f"### `{hook}({params})`"
    assert heading in _section("Hooks").splitlines(), f"docs/plugins.md has no heading {heading!r} in its Hooks section"


def test_the_docs_name_no_hook_that_does_not_exist():
    hooks_section = _section("Hooks")
    named = set(re.findall(r"^### `(\w+)\(", hooks_section, re.M))  # hook headings
    named |= set(re.findall(r"\bdef (zoo_\w+)\(", TEXT))  # hook implementations in examples
    named |= set(re.findall(r"\b(zoo_(?:on|register)_\w+)", TEXT))  # any hook-like name, anywhere
    assert named - set(HOOKS) == set(), "docs/plugins.md names hooks that zoo.hookspecs does not define"
    assert named >= set(HOOKS)


def test_the_entry_point_group_is_the_one_zoo_reads():
    from zoo.plugins import ENTRY_POINT_GROUP

    assert f"[project.entry-points.{ENTRY_POINT_GROUP}]" in TEXT
    assert f"entry-point group **`{ENTRY_POINT_GROUP}`**" in TEXT


@pytest.mark.parametrize("cls", [zoo.ModelSpec, zoo.Batching, zoo.Stage, zoo.Reference], ids=lambda c: c.__name__)
def test_every_spec_field_is_documented(cls):
    missing = [f.name for f in dataclasses.fields(cls) if f"`{f.name}`" not in TEXT]
    assert missing == [], f"docs/plugins.md does not document {cls.__name__} fields {missing}"


def test_the_modelspec_table_lists_exactly_its_fields():
    rows = re.findall(r"^\| `(\w+)` \|", _section("ModelSpec: what a model declares"), re.M)
    assert sorted(rows) == sorted(f.name for f in dataclasses.fields(zoo.ModelSpec))  # each once, any order


def test_the_test_kit_is_documented():
    section = _section("Testing with zoo.testing")
    for name in testing.__all__:
        assert f"`{name}" in section, f"zoo.testing.{name} is not documented"
    assert re.findall(r"^\| `(\w+)` \|", section, re.M) == list(testing.CHECKS)


def test_every_zoo_command_in_the_examples_exists():
    from zoo.cli import _add_plugin_commands, cli

    _add_plugin_commands()
    used = set()
    for block in _fenced(("bash", "sh")):
        for line in block.splitlines():
            m = re.match(r"\s*zoo ([a-z][a-z-]*)", line)
            if m:
                used.add(m.group(1))
    assert {"new-plugin", "list", "train", "sample"} <= used
    assert used - set(cli.commands) == set(), f"docs/plugins.md runs commands zoo does not have: {used - set(cli.commands)}"


def test_every_python_example_compiles():
    blocks = _fenced(("python",))
    assert len(blocks) >= 5
    for block in blocks:
        compile(block, str(DOC), "exec")


def test_the_hookspecs_point_to_the_docs():
    assert "docs/plugins.md" in hookspecs.__doc__
