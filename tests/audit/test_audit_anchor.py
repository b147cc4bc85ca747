"""The audit key: `init` creates it outside the database (beside a SQLite file or where configured, mode 0600) and
says where, never what; a sealed record refuses writes from a process without its key; verify without the key
says plainly that anchoring was not checked; a database from the previous release is sealed by `init` from then
on; organisation changes are a chain of their own. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shlex
import stat
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from insider import GATE, KEY_FILE, assert_reported, cli, events_of, rewrite, sql

from conftest import TEST_ORG
from pmoflow.engine import anchor
from pmoflow.engine.database import MIGRATIONS
from pmoflow.engine.errors import PmoflowError

pytestmark = pytest.mark.usefixtures("cli_handlers")
OTHER_KEY = "f" * 64


@pytest.fixture
def keyed(make_pmo, tmp_path, monkeypatch):
    key = tmp_path / "keys" / "audit.key"
    key.parent.mkdir()
    monkeypatch.setenv(KEY_FILE, str(key))
    app = make_pmo("bob")
    return app, key


def started(app) -> int:
    app.init(TEST_ORG)
    app.deploy([GATE])
    return app.start("audit_gate", {"project": "Apollo", "score": 6})["instance_id"]


def test_init_creates_a_private_key_beside_a_sqlite_database_and_says_where(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_FILE, raising=False)
    monkeypatch.delenv(anchor.KEY_ENV, raising=False)
    url = f"sqlite:///{tmp_path / 'team.db'}"
    first = cli(url, "init", "--org", TEST_ORG, user=None)
    assert first.exit_code == 0, first.stderr
    key = tmp_path / "team.db.audit-key"
    assert f"audit key: created {key}" in first.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().strip() not in first.stdout + first.stderr
    again = cli(url, "init", "--org", TEST_ORG)
    assert again.exit_code == 0 and f"audit key: {key}\n" in again.stdout
    ok = cli(url, "audit", "verify")
    assert ok.exit_code == 0 and "sealed with the audit key since" in ok.stdout


def test_init_creates_the_configured_key_file(keyed, db_url):
    app, key = keyed
    result = cli(db_url, "init", "--org", TEST_ORG, "--json", user=None)
    assert result.exit_code == 0, result.stderr
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert '"created": true' in result.stdout and key.read_text().strip() not in result.stdout


def test_a_sealed_record_refuses_writes_without_its_key(keyed, db_url, monkeypatch):
    app, key = keyed
    instance = started(app)
    secret = key.read_text().strip()
    before = sql(app, "SELECT count(*) FROM events")
    monkeypatch.delenv(KEY_FILE)
    refused = cli(db_url, "start", "audit_gate", "--data", '{"project": "Zeus", "score": 3}')
    assert refused.exit_code == 1 and "sealed with an audit key, and no audit key is configured" in refused.stderr
    assert "nothing was changed" in refused.stderr
    for reading in (["show", instance], ["task", 1], ["history", instance]):  # reading needs no key
        assert cli(db_url, *reading).exit_code == 0, reading
    blind = cli(db_url, "audit", "verify")  # nor does verify, which says what it could not check
    assert blind.exit_code == 0 and "anchoring NOT checked: this record is sealed with an audit key" in blind.stdout
    monkeypatch.setenv(anchor.KEY_ENV, OTHER_KEY)
    wrong = cli(db_url, "start", "audit_gate", "--data", '{"project": "Zeus", "score": 3}')
    assert wrong.exit_code == 1 and "is not the key this database's audit record is sealed with" in wrong.stderr
    assert sql(app, "SELECT count(*) FROM events") == before
    other = cli(db_url, "audit", "verify")
    assert other.exit_code == 1 and "anchor/key: the audit key from PMOFLOW_AUDIT_KEY is not the key" in other.stderr
    for output in (refused, blind, wrong, other):
        assert secret not in output.stdout + output.stderr and OTHER_KEY not in output.stdout + output.stderr
        assert "Traceback" not in output.stderr


def test_a_key_that_is_too_short_is_refused_plainly(keyed, db_url, monkeypatch):
    monkeypatch.delenv(KEY_FILE)
    monkeypatch.setenv(anchor.KEY_ENV, "secret")
    result = cli(db_url, "init", "--org", TEST_ORG, user=None)
    assert result.exit_code == 1 and "too short" in result.stderr and "secret" not in result.stderr


def _downgrade_to_the_previous_release(app, key: Path) -> None:
    """What a database of the previous release looks like: no seals (no table), no organisation chain, deployment
    events without the spec's hash, no key."""
    sql(app, "DELETE FROM event_facts WHERE event_id IN (SELECT id FROM events WHERE stream = 'organisation')")
    sql(app, "DELETE FROM events WHERE stream = 'organisation'")
    rewrite(app, "definition/audit_gate", lambda events: events[0]["payload"].pop("spec_hash"))
    sql(app, "DELETE FROM event_facts WHERE key = 'spec_hash'")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = app.db.engine
    command.downgrade(config, "0004")
    key.unlink()


def test_a_database_from_the_previous_release_is_sealed_by_init(keyed, db_url, monkeypatch):
    app, key = keyed
    instance = started(app)
    _downgrade_to_the_previous_release(app, key)
    upgraded = cli(db_url, "init", "--org", TEST_ORG)
    assert upgraded.exit_code == 0, upgraded.stderr
    assert f"audit key: created {key}; sealed the record as it stands (1 instances)" in upgraded.stdout
    assert [e["type"] for e in events_of(app, "organisation")] == ["organisation_recorded"]
    ok = cli(db_url, "audit", "verify")
    assert ok.exit_code == 0 and "earlier history is vouched for as it stood then" in ok.stdout, ok.stderr
    # the spec of a deployment from before has no hash in its event: the seal made at the upgrade covers it
    sql(app, "UPDATE process_definitions SET spec = replace(spec, 'Decide the gate', 'Wave it through')")
    assert_reported(db_url, "definition/audit_gate", "serialized spec (what runs) or start form differs")
    sql(app, "UPDATE process_definitions SET spec = replace(spec, 'Wave it through', 'Decide the gate')")
    bob = cli(db_url, "complete", app.tasks(all_tasks=True)[0]["id"], "--data", '{"gateDecision": "Go"}',
              user="carol")
    assert bob.exit_code == 0, bob.stderr
    assert cli(db_url, "audit", "verify").exit_code == 0
    rewrite(app, f"instance/{instance}", keep=2)
    assert_reported(db_url, f"instance/{instance}", "without the audit key")


def test_without_a_key_the_record_is_not_anchored_and_verify_says_so(keyed, db_url, monkeypatch):
    app, key = keyed
    started(app)
    _downgrade_to_the_previous_release(app, key)
    app.db.upgrade()
    monkeypatch.setenv(KEY_FILE, str(key.parent / "missing" / "audit.key"))
    with pytest.raises(PmoflowError, match="cannot create the audit key .*: folder .* does not exist"):
        app.init(TEST_ORG)
    result = cli(db_url, "audit", "verify")
    assert result.exit_code == 0, result.stderr
    assert "anchoring NOT checked: this record is not sealed with an audit key (set PMOFLOW_AUDIT_KEY_FILE and " \
           "run 'pmoflow init' to seal it)" in result.stdout


def test_organisation_changes_are_a_chain_with_before_after_and_actor(keyed, db_url, tmp_path):
    app, _ = keyed
    started(app)
    org = tmp_path / "org.toml"
    text = TEST_ORG.read_text().replace('name = "erin"\nroles = ["Project Manager"]',
                                        'name = "frank"\nroles = ["SQA"]')
    org.write_text(text.replace('roles = ["Sponsor"]', 'roles = ["Sponsor", "Project Manager"]'))
    assert cli(db_url, "init", "--org", org).exit_code == 0
    chain = events_of(app, "organisation")
    assert [(e["type"], e["actor"]) for e in chain] == [("organisation_loaded", "pmoflow-init"),
                                                        ("organisation_loaded", "bob")]
    change = chain[-1]["payload"]
    assert set(change["added"]) == {"frank"} and set(change["removed"]) == {"erin"}
    assert change["changed"]["dave"]["before"]["roles"] == ["Sponsor"]
    assert change["changed"]["dave"]["after"]["roles"] == ["Project Manager", "Sponsor"]
    assert change["source"] == str(org)
    assert cli(db_url, "audit", "verify").exit_code == 0
    same = cli(db_url, "init", "--org", org)  # nothing changed: nothing recorded
    assert same.exit_code == 0 and len(events_of(app, "organisation")) == 2
    sql(app, "DELETE FROM user_roles WHERE user_name = 'frank'")
    assert_reported(db_url, "organisation", "user frank: roles in the database differ")


def test_the_readme_lines_on_the_audit_key_run(keyed, db_url, tmp_path):
    """The README's block on the audit key, with its folders made here."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text[text.index("### The audit key"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    (tmp_path / "media").mkdir()
    (tmp_path / "archives").mkdir()
    lines = [line.replace("/media/auditor", str(tmp_path / "media")).replace("/srv/pmo-archives",
                                                                           str(tmp_path / "archives"))
             for line in block.splitlines() if line.startswith("pmoflow ")]
    assert len(lines) == 3
    for line in lines:
        args = shlex.split(line, comments=True)[1:]
        if args == ["init"]:
            args += ["--org", TEST_ORG]
        result = cli(db_url, *args)
        assert result.exit_code == 0, f"{line}: {result.stdout}{result.stderr}"
        if args[0] == "init":
            assert f"audit key: created {keyed[1]}" in result.stdout
