"""`fleetd ops …` and `fleetd batch …`: operations and batches on the configured store.

Local administration beside the API: list, show (with every step), cancel, retry, and a
batch's progress. Times are shown in JST.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from sqlalchemy import select

from fleetd import batches
from fleetd.cli import run, state
from fleetd.clock import JST, SystemClock
from inventory import operations as ops
from inventory.operations import Operation, OpState
from inventory.store import open_store

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _jst(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")


def op_dict(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind,
        "unit": op.unit_serial,
        "customer": op.customer_code,
        "state": op.state,
        "attempts": op.attempts,
        "not_before": op.not_before.isoformat(),
        "deadline": op.deadline.isoformat() if op.deadline else None,
        "batch": op.batch_id,
        "requested_by": op.requested_by,
        "reason": op.reason,
        "params": op.params,  # never secrets: those are sealed in secret_params
    }


def list_ops(
    ctx: typer.Context,
    state_: Annotated[
        str | None, typer.Option("--state", help="queued, running, retry_wait, succeeded, …")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="e.g. cutover, account_stop")] = None,
    unit: Annotated[str | None, typer.Option(help="A unit serial.")] = None,
    batch: Annotated[str | None, typer.Option(help="A batch id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List operations, newest first."""
    settings = state(ctx).settings
    if state_ is not None and state_ not in {s.value for s in OpState}:
        raise typer.BadParameter(
            f"{state_!r}: one of {', '.join(s.value for s in OpState)}", param_hint="--state"
        )

    async def go() -> list[dict[str, Any]]:
        async with open_store(settings.database_url) as store, store.sessions() as session:
            query = select(Operation).order_by(Operation.id.desc()).limit(limit)
            if state_:
                query = query.where(Operation.state == state_)
            if kind:
                query = query.where(Operation.kind == kind)
            if unit:
                query = query.where(Operation.unit_serial == unit)
            if batch:
                query = query.where(Operation.batch_id == batch)
            return [op_dict(op) for op in (await session.scalars(query)).all()]

    rows = run(go())
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        target = row["unit"] or row["customer"] or "-"
        typer.echo(
            f"{row['id']:>7}  {row['kind']:<15} {target:<12} {row['state']:<10} "
            f"{row['attempts']:>2}  {row['reason'] or ''}"
        )


def show(ctx: typer.Context, op_id: int, as_json: JsonOpt = False) -> None:
    """One operation, with every step it took."""
    settings = state(ctx).settings

    async def go() -> dict[str, Any]:
        async with open_store(settings.database_url) as store, store.sessions() as session:
            op = await ops.get(session, op_id)
            steps = await ops.steps(session, op_id)
            out = op_dict(op)
            out["steps"] = [
                {
                    "seq": s.seq,
                    "at": s.at.isoformat(),
                    "step": s.step,
                    "ok": s.ok,
                    "detail": s.detail,
                }
                for s in steps
            ]
            return out

    row = run(go())
    if as_json:
        typer.echo(json.dumps(row, ensure_ascii=False, indent=2))
        return
    typer.echo(
        f"operation {row['id']}: {row['kind']} on {row['unit'] or row['customer']}: "
        f"{row['state']} after {row['attempts']} attempt(s)"
    )
    if row["reason"]:
        typer.echo(f"  {row['reason']}")
    for step in row["steps"]:
        mark = "ok " if step["ok"] else "NG "
        when = _jst(datetime.fromisoformat(step["at"]))
        typer.echo(f"  {when} {mark}{step['step']}: {step['detail']}")


def cancel(ctx: typer.Context, op_id: int) -> None:
    """Cancel an operation that has not started."""
    settings = state(ctx).settings

    async def go() -> Operation:
        async with open_store(settings.database_url) as store, store.transaction() as session:
            return await ops.cancel(session, op_id, "cancelled by a local administrator")

    op = run(go())
    typer.echo(f"operation {op.id} cancelled")


def retry(ctx: typer.Context, op_id: int) -> None:
    """Queue a failed, escalated or cancelled operation again, due now."""
    settings = state(ctx).settings

    async def go() -> Operation:
        async with open_store(settings.database_url) as store, store.transaction() as session:
            now = SystemClock().now()
            return await ops.retry(session, op_id, now, "retried by a local administrator")

    op = run(go())
    typer.echo(f"operation {op.id} queued again (attempts so far: {op.attempts})")


def batch_show(ctx: typer.Context, batch_id: str, as_json: JsonOpt = False) -> None:
    """A batch's progress: operations by state, failure rate, why it stopped."""
    settings = state(ctx).settings

    async def go() -> batches.Progress:
        async with open_store(settings.database_url) as store, store.sessions() as session:
            return await batches.progress(session, batch_id)

    p = run(go())
    if as_json:
        typer.echo(json.dumps({**p.__dict__, "created_at": p.created_at.isoformat()}, indent=2))
        return
    counts = ", ".join(f"{n} {s}" for s, n in sorted(p.counts.items()))
    typer.echo(f"batch {p.id} ({p.kind}): {p.state}, {p.ended} of {p.total} ended: {counts}")
    if p.reason:
        typer.echo(f"  {p.reason}")


def add_commands(app: typer.Typer) -> None:
    ops_app = typer.Typer(help="Operations: list, show, cancel, retry.", no_args_is_help=True)
    ops_app.command("list")(list_ops)
    ops_app.command("show")(show)
    ops_app.command("cancel")(cancel)
    ops_app.command("retry")(retry)
    app.add_typer(ops_app, name="ops")
    batch_app = typer.Typer(help="Batches of operations.", no_args_is_help=True)
    batch_app.command("show")(batch_show)
    app.add_typer(batch_app, name="batch")
