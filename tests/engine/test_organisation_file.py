"""The organisation file is checked in full before anything is stored (issue #10, item 7): types, lengths, known
keys, user names, duplicates, roles, e-mail shape, UTF-8, and every problem listed with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TEST_ORG
from pmoflow.engine import organisation
from pmoflow.engine.errors import InvalidInput


def problems(tmp_path: Path, text: str | bytes) -> list[str]:
    """The problems `load` lists for this file, each without the file's path."""
    path = tmp_path / "org.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InvalidInput) as refused:
        organisation.load(path)
    return [line.replace(str(path), "org.toml") for line in [refused.value.message, *refused.value.details]]


def test_the_bundled_and_test_organisations_load():
    assert [p.name for p in organisation.load(TEST_ORG).people][:2] == ["alice", "bob"]


def test_every_problem_is_listed_with_the_line_of_its_user_or_key(tmp_path):
    found = problems(tmp_path, """\
# a comment
title = "PMO"

[[users]]
name = "alice"
roles = ["SQA"]

[[users]]
name = "bad name"
email = "not-an-address"
roles = ["SQA", " QD", ""]

[[users]]
name = "carol"
roles = "SQA"
colour = "red"

[[users]]
full_name = "Nobody"
department = 5
""")
    assert found == [
        "org.toml: the organisation file has 9 problem(s); nothing was loaded",
        "org.toml:2: unknown key 'title'; an organisation file holds [[users]] tables only",
        "org.toml:9: user #2: 'name' ('bad name') may hold only letters, digits and . _ - @ +, starting with a "
        "letter or a digit",
        "org.toml:10: user #2: 'email' is not an e-mail address like name@example.org",
        "org.toml:11: user #2: the role ' QD' must be a role name without leading or trailing spaces",
        "org.toml:11: user #2: the role '' must be a role name without leading or trailing spaces",
        "org.toml:16: user 'carol': unknown key 'colour'; a user has department, email, full_name, name, roles",
        "org.toml:15: user 'carol': 'roles' must be a list of role names, like [\"SQA\"]",
        "org.toml:18: user #4: 'name' must be a non-empty string",
        "org.toml:20: user #4: 'department' must be text, not int",
    ]


def test_a_user_listed_twice_names_both_lines(tmp_path):
    found = problems(tmp_path, '[[users]]\nname = "alice"\n\n[[users]]\nroles = []\nname = "alice"\n')
    assert found[1:] == ["org.toml:6: user 'alice' is listed twice (first at line 2)"]


@pytest.mark.parametrize(("line", "problem"), [
    ('name = "' + "a" * 121 + '"', "'name' ('" + "a" * 60 + "...') is 121 characters long; at most 120"),
    ('name = "a" \nfull_name = "' + "F" * 201 + '"', "'full_name' is 201 characters long; at most 200"),
    ('name = "a" \ndepartment = "Ops\\tQA"', "'department' holds a control character"),
    ('name = "a" \nemail = "a@b"', "'email' is not an e-mail address"),
    ('name = "a" \nroles = [1]', "the role 1 must be text, not int"),
    ('name = "a" \nroles = ["' + "R" * 121 + '"]', "is 121 characters long; at most 120"),
    ('name = "-a"', "starting with a letter or a digit"),
    ('name = "a,b"', "may hold only letters, digits"),
    ('name = ""', "'name' ('') must be a non-empty string"),
])
def test_each_value_is_checked_against_its_column(tmp_path, line, problem):
    found = problems(tmp_path, f"[[users]]\n{line}\n")
    assert any(problem in p for p in found[1:]), found


def test_names_of_other_scripts_are_users(tmp_path):
    path = tmp_path / "org.toml"
    path.write_text('[[users]]\nname = "zoë.müller"\nemail = "zoe@example.org"\nroles = []\n'
                    '[[users]]\nname = "ops_bot-2"\nroles = ["Sponsor"]\n', encoding="utf-8")
    assert [p.name for p in organisation.load(path).people] == ["zoë.müller", "ops_bot-2"]


def test_an_inline_array_of_users_is_read_and_its_problems_point_at_it(tmp_path):
    assert problems(tmp_path, 'users = [1, {name = "x"}]\n')[1:] == [
        "org.toml:1: user #1 must be a table (name = ..., roles = [...]), not int"]


def test_a_file_that_is_not_utf8_or_not_toml_names_the_place(tmp_path):
    assert problems(tmp_path, b'[[users]]\nname = "bob"\nfull_name = "B\xf6b"\n') == [
        "org.toml:3:15: not UTF-8 text (byte 0xf6); save the file as UTF-8"]
    assert problems(tmp_path, "[[users]\n") == [
        "org.toml:1:8: not valid TOML: Expected ']]' at the end of an array declaration"]
    assert problems(tmp_path, "# nobody\n")[1:] == ["org.toml:1: expected one or more [[users]] tables"]


def test_a_byte_order_mark_is_allowed(tmp_path):
    path = tmp_path / "org.toml"
    path.write_bytes(b'\xef\xbb\xbf[[users]]\nname = "bob"\nroles = []\n')
    assert organisation.load(path).people[0].name == "bob"


def test_a_path_that_cannot_be_read_is_a_plain_error(tmp_path):
    for path in (tmp_path, tmp_path / "missing.toml", "a\x00b"):
        with pytest.raises(InvalidInput, match="cannot read organisation file"):
            organisation.load(path)


def test_the_name_rule_is_shared_with_user_names():
    assert organisation.name_problem("pete.pm") is None
    assert organisation.name_problem("pete pm") is not None
    assert organisation.name_problem("x" * 121) == "is 121 characters long; at most 120"
