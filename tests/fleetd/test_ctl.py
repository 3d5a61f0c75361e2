"""fleetctl against a real control API served over HTTP on 127.0.0.1 (tests/fleetd/ctl_server.py),
as staff use it: look-ups, change requests, following work, errors in one line."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from fleetd import ctl
from inventory import operations as ops
from tests.api.conftest import CANARY, CODE, GUEST_CANARY, PARENT, UNIT_PASSWORD, contracts_csv
from tests.fleetd.ctl_server import ServedApi, make_template, serve_api

BASE = "127.88.0.1"
SECRETS = (CANARY, GUEST_CANARY, UNIT_PASSWORD)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "fleetd.db"
    asyncio.run(make_template(path))
    return path


@pytest.fixture
def served(tmp_path: Path, template: Path) -> Iterator[ServedApi]:
    with serve_api(tmp_path, template) as api:
        yield api


@pytest.fixture
def served_fleet(tmp_path: Path, template: Path) -> Iterator[ServedApi]:
    with serve_api(tmp_path, template, fleet_base=BASE) as api:
        yield api


def fleetctl(served: ServedApi, role: str | None, *args: str, input: str | None = None) -> Result:
    """Run fleetctl as `role`; no secret and no token ever appears in what it prints."""
    result = CliRunner().invoke(
        ctl.create_app(), list(args), env=served.env(role), input=input, catch_exceptions=False
    )
    shown = result.stdout + result.stderr
    for secret in (*SECRETS, *served.seeded.tokens.values()):
        assert secret not in shown, args
    return result


def one_line(result: Result) -> str:
    """The error fleetctl printed: exactly one line on stderr, nothing on stdout."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    assert lines[0].startswith("fleetctl: ")
    return lines[0]


def test_a_customer_is_found_by_code_phone_or_kana(served: ServedApi) -> None:
    for query in (CODE, "03-1234-5678", "ｶﾌｪｷ"):
        shown = fleetctl(served, "cs", "customers", query)
        assert shown.exit_code == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0] == f"{CODE}  カフェ木村 (カフェキムラ)", query
        assert "installation site: 〒105-0001 東京都港区新橋1-2-3 (カフェ木村)" in lines
        assert "ISP line: flets-east, 4over6 order complete (2026-11-02)" in lines
        assert any(line.split()[:3] == [PARENT, "parent", "-"] for line in lines)
        assert any(line.split()[:3] == ["US01AP000002", "child", PARENT] for line in lines)

    as_json = fleetctl(served, "cs", "customers", "--phone", "0312345678", "--json")
    assert [c["code"] for c in json.loads(as_json.stdout)] == [CODE]
    nobody = fleetctl(served, "cs", "customers", "ﾗｰﾒﾝ")
    assert (nobody.exit_code, nobody.stdout) == (0, "no customer found\n")


def test_v6_says_the_verdict_first_then_the_details(served: ServedApi) -> None:
    shown = fleetctl(served, "cs", "v6", CODE)
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{CODE}: line ready, router still on V4: no cutover requested yet"
    assert lines[1] == "4over6 order: complete (2026-11-02)"
    assert lines[2] == (f"{PARENT}: V4 (PPPoE), tunnel -, U lamp off, reachable, read 5 min ago")

    status = json.loads(fleetctl(served, "cs", "v6", CODE, "--json").stdout)
    assert status["verdict"] == "line ready, router still on V4: no cutover requested yet"
    assert [p["serial"] for p in status["parents"]] == [PARENT]


def test_a_cutover_answers_its_operations_and_ops_show_them(served: ServedApi) -> None:
    asked = fleetctl(served, "tech", "cutover", CODE, "--not-before", "2026-11-25T10:00", "--json")
    assert asked.exit_code == 0, asked.stderr
    answer = json.loads(asked.stdout)
    [op] = answer["operations"]
    assert (op["kind"], op["unit_serial"], op["state"]) == ("cutover", PARENT, "queued")
    assert answer["request_id"]

    again = fleetctl(served, "tech", "revert", CODE, "--not-before", "2026-11-26 10:00")
    assert again.exit_code == 0, again.stderr
    [queued, follow] = again.stdout.splitlines()
    assert queued.startswith("queued operation ")
    assert queued.endswith(
        f": revert_v4 of {PARENT}, queued, not before 2026-11-26 10:00 JST, deadline "
        + queued.split("deadline ")[1]
    )
    revert_id = int(queued.split()[2].rstrip(":"))
    assert follow == f"follow with: fleetctl ops watch {revert_id}"

    shown = fleetctl(served, "cs", "ops", "show", str(op["id"]))
    assert shown.stdout.splitlines()[0] == (
        f"operation {op['id']}: cutover of {PARENT}: queued after 0 attempt(s)"
    )
    assert "not before 2026-11-25 10:00 JST" in shown.stdout
    listed = json.loads(fleetctl(served, "cs", "ops", "list", "--kind", "cutover", "--json").stdout)
    assert [o["id"] for o in listed] == [op["id"]]

    v6 = fleetctl(served, "cs", "v6", CODE).stdout.splitlines()
    assert (
        v6[0] == f"{CODE}: line ready, router still on V4: cutover queued for 2026-11-25 10:00 JST"
    )
    assert any(line.startswith(f"pending: operation {op['id']} cutover {PARENT}") for line in v6)


def test_ops_show_has_every_step_and_watch_ends_with_the_outcome(served: ServedApi) -> None:
    done = served.seeded.done_op
    shown = fleetctl(served, "auditor", "ops", "show", str(done))
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"operation {done}: guest_rotate of {PARENT}: succeeded after 0 attempt(s)"
    assert lines[-1].endswith(" ok read: guest ssid Kimura-Free")

    watched = fleetctl(served, "cs", "ops", "watch", str(done))
    assert watched.exit_code == 0, watched.stderr
    assert watched.stdout.splitlines()[-1] == lines[0]

    as_json = fleetctl(served, "cs", "ops", "watch", str(done), "--json")
    [snapshot] = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert (snapshot["id"], snapshot["state"]) == (done, "succeeded")


def test_watching_an_operation_that_fails_exits_non_zero(served: ServedApi) -> None:
    asked = json.loads(fleetctl(served, "tech", "guest-rotate", CODE, "--json").stdout)
    ids = [str(o["id"]) for o in asked["operations"]]

    async def fail_them() -> None:
        async with served.store.transaction() as session:
            for op_id in ids:
                op = await ops.get(session, int(op_id))
                await ops.add_step(session, op, "read", False, "no answer within 3 s")
                op.state, op.reason = "failed", "unit unreachable"

    served.call(fail_them)
    watched = fleetctl(served, "cs", "ops", "watch", *ids)
    assert watched.exit_code == 1
    assert " NG read: no answer within 3 s" in watched.stdout
    assert watched.stdout.splitlines()[-1].endswith(": failed after 0 attempt(s): unit unreachable")
    assert watched.stderr.startswith(f"fleetctl: operation {ids[0]} failed")


def test_a_cs_token_may_not_ask_for_a_cutover(served: ServedApi) -> None:
    refused = fleetctl(served, "cs", "cutover", CODE)
    assert refused.exit_code == 4
    line = one_line(refused)
    assert line.startswith("fleetctl: not allowed: cs-user has role cs; this needs tech")
    assert line.endswith("(or ask an admin for the role if your work needs it)")


def test_an_unknown_or_missing_token_says_to_check_fleetd_token(served: ServedApi) -> None:
    env = {**served.env(None), "FLEETD_TOKEN": "not-a-token-of-ours"}
    result = CliRunner().invoke(ctl.create_app(), ["v6", CODE], env=env)
    assert result.exit_code == 4
    line = one_line(result)
    assert "not signed in" in line and line.endswith("(check FLEETD_TOKEN)")
    assert "not-a-token-of-ours" not in line

    missing = fleetctl(served, None, "v6", CODE)
    assert missing.exit_code == 2
    assert one_line(missing).startswith("fleetctl: FLEETD_TOKEN is not set")


def test_a_daemon_that_is_not_running_is_named_in_one_line(served: ServedApi) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**served.env("cs"), "FLEETD_URL": f"http://127.0.0.1:{port}"}
    result = CliRunner().invoke(ctl.create_app(), ["customers", CODE], env=env)
    assert result.exit_code == 3
    assert one_line(result) == (
        f"fleetctl: cannot reach the fleetd API at http://127.0.0.1:{port} (connection "
        "refused): the daemon must be running there (`fleetd serve`), or set FLEETD_URL to "
        "where it runs"
    )


def test_a_broken_rule_names_the_field_the_option_and_the_value(served: ServedApi) -> None:
    refused = fleetctl(served, "tech", "cutover", CODE, "--confirm-minutes", "90")
    assert refused.exit_code == 1
    assert one_line(refused) == (
        "fleetctl: refused: confirm_minutes (--confirm-minutes) 90: is a whole number of "
        "minutes from 1 to 60"
    )
    month = fleetctl(served, "cs", "month-end", "preview", "--month", "2026-13")
    assert one_line(month) == (
        'fleetctl: refused: month (--month) "2026-13": a month is YYYY-MM, e.g. 2026-11'
    )
    unknown = fleetctl(served, "cs", "v6", "999999999")
    assert (unknown.exit_code, one_line(unknown)) == (1, "fleetctl: no customer 999999999")
    bad_time = fleetctl(served, "tech", "cutover", CODE, "--not-before", "tomorrow")
    assert bad_time.exit_code == 2
    assert one_line(bad_time).startswith('fleetctl: --not-before "tomorrow" is not a time')


def test_an_original_ssid_is_set_and_cleared(served: ServedApi) -> None:
    asked = fleetctl(served, "cs", "original-ssid", "set", CODE, "Cafe Kimura")
    assert asked.exit_code == 0, asked.stderr
    assert asked.stdout.startswith("queued operation ")
    assert ": original_ssid of " in asked.stdout
    cleared = json.loads(fleetctl(served, "cs", "original-ssid", "clear", CODE, "--json").stdout)
    assert {o["params"].get("clear") for o in cleared["operations"]} == {True}


def test_a_business_passphrase_typed_in_is_never_shown(served: ServedApi) -> None:
    typed = "Typed-Biz-Pass-9911"
    asked = fleetctl(
        served,
        "cs",
        "business-ssid",
        CODE,
        "--ssid",
        "Kimura-Office",
        "--ask-passphrase",
        "--json",
        input=f"{typed}\n{typed}\n",
    )
    assert asked.exit_code == 0, asked.stderr
    assert typed not in asked.stdout + asked.stderr
    answer = json.loads(asked.stdout)
    assert {o["params"]["ssid"] for o in answer["operations"]} == {"Kimura-Office"}


def test_a_link_item_swap_takes_its_password_unseen(served: ServedApi, tmp_path: Path) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOkPlQL2heTPQdoY4kSP/h0UXABg1rJq93adid88nCAF"
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:2022 {key}\n")
    password = "Link-Item-Pass-3141"
    link = ("--new-serial", "US01LK000009", "--address", "127.0.0.1", "--ssh-port", "2022")
    asked = fleetctl(
        served, "tech", "swap", PARENT, *link, "--host-key-file", str(known_hosts), "--json",
        input=f"{password}\n",
    )  # fmt: skip
    assert asked.exit_code == 0, asked.stderr
    assert password not in asked.stdout + asked.stderr
    [op] = json.loads(asked.stdout)["operations"]
    assert (op["kind"], op["unit_serial"]) == ("link_swap", PARENT)
    assert op["params"]["host_key"] == key and "password" not in op["params"]

    child = fleetctl(
        served, "tech", "swap", "US01AP000002", *link, "--host-key", key, input="pw-123456\n"
    )
    assert child.exit_code == 1
    assert one_line(child).startswith(
        'fleetctl: refused: link_item "yes": US01AP000002 is a child: a child is never replaced'
    )


def test_an_account_is_stopped_and_resumed_by_an_admin(served: ServedApi) -> None:
    stopped = fleetctl(served, "admin", "stop", PARENT, "--not-before", "2026-11-30T23:59")
    assert stopped.exit_code == 0, stopped.stderr
    assert f": account_stop of {PARENT}, queued, not before 2026-11-30 23:59 JST" in stopped.stdout
    resumed = json.loads(fleetctl(served, "admin", "resume", PARENT, "--json").stdout)
    assert [o["kind"] for o in resumed["operations"]] == ["account_resume"]
    tech = fleetctl(served, "tech", "stop", PARENT)
    assert tech.exit_code == 4 and "this needs admin" in one_line(tech)


def test_imports_check_first_and_list_every_bad_row(served: ServedApi, tmp_path: Path) -> None:
    good = tmp_path / "contracts.csv"
    good.write_bytes(contracts_csv())
    checked = fleetctl(served, "admin", "import", "contracts", str(good), "--dry-run", "--json")
    assert checked.exit_code == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert (report["dry_run"], report["written"], report["rows"]) == (True, False, 1)

    bad = tmp_path / "bad.csv"
    bad.write_bytes(contracts_csv(serial="US01BAD"))
    refused = fleetctl(served, "admin", "import", "contracts", str(bad))
    assert refused.exit_code == 1
    assert "line 2: serial 'US01BAD': " in refused.stdout
    assert refused.stderr == (
        "fleetctl: import refused: 1 problem(s) listed above, nothing written; fix the rows, "
        "or give --skip-invalid to import the others\n"
    )
    cs = fleetctl(served, "cs", "import", "contracts", str(good))
    assert cs.exit_code == 4 and "needs admin" in one_line(cs)


def test_month_end_and_the_audit_log(served: ServedApi) -> None:
    preview = json.loads(
        fleetctl(served, "cs", "month-end", "preview", "--month", "2026-11", "--json").stdout
    )
    assert (preview["month"], preview["stops"]) == ("2026-11", [])
    shown = fleetctl(served, "cs", "month-end", "preview", "--month", "2026-11")
    assert shown.stdout == "2026-11: 0 accounts to stop at 2026-11-30 23:59 JST\n"
    run = fleetctl(served, "admin", "month-end", "run", "--month", "2026-11")
    assert run.exit_code == 0, run.stderr

    entries = json.loads(fleetctl(served, "auditor", "audit", "--json").stdout)
    assert [e["action"] for e in entries][:2] == ["month_end_run", "seed"]
    table = fleetctl(served, "auditor", "audit", "--actor", "admin-user")
    assert "month_end_run" in table.stdout and "seed" not in table.stdout


def test_a_registration_notice_is_written_for_the_post(served: ServedApi, tmp_path: Path) -> None:
    pdf = tmp_path / "notice.pdf"
    made = fleetctl(
        served, "cs", "notice", CODE, "--requester", "shop-staff", "--name", "佐藤",
        "--to", "billing", "--out", str(pdf),
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    assert pdf.stat().st_mode & 0o777 == 0o600
    assert made.stdout.startswith(f"wrote {pdf} (")
    assert "post it to the billing address, 〒100-0005 東京都千代田区丸の内1-1" in made.stdout

    again = fleetctl(
        served, "cs", "notice", CODE, "--requester", "owner", "--name", "木村",
        "--to", "billing", "--out", str(pdf),
    )  # fmt: skip
    assert again.exit_code == 2 and "exists" in one_line(again)
    nowhere = fleetctl(
        served, "cs", "notice", CODE, "--requester", "owner", "--name", "木村",
        "--to", "contract-holder", "--out", str(tmp_path / "n2.pdf"),
    )  # fmt: skip
    assert nowhere.exit_code == 1
    assert one_line(nowhere).startswith(
        'fleetctl: refused: destination.kind (--to) "contract_holder": a registration notice '
        "is posted only to one of the customer's registered addresses"
    )
    assert not (tmp_path / "n2.pdf").exists()


def test_login_runs_ssh_through_the_bastion(
    served: ServedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    env = {"FLEETD_URL": served.url, "FLEETD_USER": "alice", "FLEETD_BASTION": None}
    printed = runner.invoke(ctl.create_app(), ["login", "us01ap000001", "--print"], env=env)
    assert printed.exit_code == 0, printed.stderr
    assert printed.stdout == "ssh -t -p 2222 alice@127.0.0.1 US01AP000001\n"

    execs: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(ctl.os, "execvp", lambda file, args: execs.append((file, args)))
    moved = {**env, "FLEETD_BASTION": "127.0.0.9:2200"}
    known = "UserKnownHostsFile=/k/known_hosts"
    ran = runner.invoke(ctl.create_app(), ["login", PARENT, "-i", "/k/id", "-o", known], env=moved)
    assert ran.exit_code == 0, ran.stderr
    [(file, args)] = execs
    assert file.endswith("ssh")
    assert args == [
        "ssh", "-t", "-p", "2200", "-i", "/k/id", "-o", known, "alice@127.0.0.9", PARENT,
    ]  # fmt: skip

    as_json = runner.invoke(ctl.create_app(), ["login", PARENT, "--json"], env=env)
    assert json.loads(as_json.stdout) == ["ssh", "-t", "-p", "2222", "alice@127.0.0.1", PARENT]
    nobody = runner.invoke(ctl.create_app(), ["login", PARENT], env={**env, "FLEETD_USER": None})
    assert nobody.exit_code == 2
    assert "give --user NAME or set FLEETD_USER" in one_line(nobody)
    wrong = runner.invoke(ctl.create_app(), ["login", "AB12"], env=env)
    assert wrong.exit_code == 2 and "starting with US01" in one_line(wrong)


def test_a_cutover_followed_to_its_end_on_a_simulated_unit(served_fleet: ServedApi) -> None:
    code = served_fleet.customer_of_fleet
    watched = fleetctl(served_fleet, "tech", "cutover", code, "--watch")
    assert watched.exit_code == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    assert lines[0].startswith("queued operation ") and ": cutover of US01" in lines[0]
    assert any(line.endswith(": queued") for line in lines)
    assert any(" ok commit confirmed: " in line for line in lines)
    assert lines[-1].startswith("operation ") and ": succeeded after 1 attempt(s)" in lines[-1]
    assert served_fleet.engine_runs and served_fleet.engine_runs[0] >= 1

    v6 = fleetctl(served_fleet, "cs", "v6", code)
    assert v6.stdout.splitlines()[0].startswith(f"{code}: on V6 since ")
    assert v6.stdout.splitlines()[2].startswith("US01SP000000: V6 (IPoE, 4over6), tunnel up, ")


def test_a_batch_followed_to_its_end(served_fleet: ServedApi) -> None:
    code = served_fleet.customer_of_fleet
    created = fleetctl(
        served_fleet, "admin", "batch", "create", "guest-rotate", "--customers", code,
        "--canary", "1", "--watch",
    )  # fmt: skip
    assert created.exit_code == 0, created.stdout + created.stderr
    lines = created.stdout.splitlines()
    assert lines[0].startswith("batch b") and "(guest_rotate): canary, 0 of 2 ended" in lines[0]
    assert lines[-1].endswith(": done, 2 of 2 ended: 2 succeeded; failure rate 0%")
    batch_id = lines[0].split()[1]
    shown = json.loads(fleetctl(served_fleet, "cs", "batch", "show", batch_id, "--json").stdout)
    assert (shown["state"], shown["counts"]) == ("done", {"succeeded": 2})
    nothing = fleetctl(served_fleet, "admin", "batch", "create", "guest_rotate")
    assert nothing.exit_code == 2
    assert one_line(nothing) == "fleetctl: give exactly one of --customers, --serials or --filter"
