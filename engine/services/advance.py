"""Running instances on: a new instance, one step to the next wait state, and delivery of what it sent.

A message and everything it causes (the receiver's reaction, an instance it starts) happen in the transaction of
the command that sent it, so they commit together with that command or not at all.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pmoflow.engine import clock, messaging, runtime
from pmoflow.engine.models import ProcessDefinition, ProcessInstance, User
from pmoflow.engine.services.context import WORKER, Context, check_may_start, final_data


def new_instance(session: Session, definition: ProcessDefinition, owner: str,
                 business_key: str | None = None) -> ProcessInstance:
    now = clock.db_now()
    instance = ProcessInstance(definition_id=definition.id, process_id=definition.process_id,
                               version=definition.version, status="running", business_key=business_key,
                               started_by=owner, started_at=now, updated_at=now, state="")
    session.add(instance)
    session.flush()
    return instance


def advance(ctx: Context, run: runtime.Run, hops: int = 0) -> None:
    """Run the instance to its next wait state, then save it and deliver what it sent."""
    run.advance()
    finish(ctx, run, hops)


def finish(ctx: Context, run: runtime.Run, hops: int = 0) -> None:
    """Project and save the run, then deliver what it sent: in this transaction, so a message and what it
    causes commit together with the command that sent it, or not at all."""
    run.sync_tasks()
    run.save()
    _dispatch(ctx, run, hops)
    if run.instance.status == "completed":
        run.log.add("instance_completed", data=final_data(run.workflow))
        run.session.flush()


def _dispatch(ctx: Context, run: runtime.Run, hops: int) -> None:
    while run.outbox and run.instance.status != "error":
        message = run.outbox.pop(0)
        try:
            deliver(ctx, run.session, message, hops + 1, sender=run)
        except messaging.MessageRefused as exc:
            run.outbox.clear()
            run.fail_send(message, exc)
            run.sync_tasks()
            run.save()


def deliver(ctx: Context, session: Session, message: messaging.Message, hops: int,
            sender: runtime.Run | None = None) -> None:
    """Hand a message to the one instance waiting for it, or start the one process it starts."""
    if hops > messaging.MAX_HOPS:
        raise messaging.MessageUnmatched(f"{message.describe()}: more than {messaging.MAX_HOPS} messages "
                                         f"answered each other in one command; is there a message loop?")
    targets, idle = messaging.receivers(session, message)
    if len(targets) > 1:
        raise messaging.ambiguous(message, targets)
    if targets:
        instance = session.scalars(select(ProcessInstance).where(ProcessInstance.id == targets[0])
                                   .with_for_update()).one()
        run = runtime.Run.for_instance(session, instance, session.get(ProcessDefinition, instance.definition_id),
                                       message.actor, ctx.handlers)
        _log_sent(sender, message, instance.id)
        run.receive(message)
    else:
        starts = message_starts(session, message.name)
        if len(starts) != 1 or idle:
            missing = messaging.expected_properties(session, message.name) - set(message.correlation)
            raise messaging.unmatched(message, idle, [d.process_id for d, _ in starts], missing)
        definition, start_event = starts[0]
        if sender is None:  # a person starting a process by message needs the right to start it
            # the sender is the acting user, whom ctx.actor found in the organisation before the message was built
            check_may_start(session, definition, session.get_one(User, message.actor))
        runtime.check_message_start(session, definition, start_event, message)
        owner = message.actor if message.actor != WORKER or sender is None else sender.instance.started_by
        instance = new_instance(session, definition, owner)
        _log_sent(sender, message, instance.id)
        run = runtime.Run.new(session, instance, definition, owner, ctx.handlers, {}, start_event=start_event)
        run.log.add("instance_started", data={}, version=definition.version, business_key=None,
                    by_message=message.name, from_instance=message.sender_instance)
        run.receive(message)
    message.delivered_to.append(instance.id)
    finish(ctx, run, hops)


def _log_sent(sender: runtime.Run | None, message: messaging.Message, to_instance: int) -> None:
    if sender is not None:
        task = runtime.find_task(sender.workflow, message.sender_task or "")
        ref = runtime._TaskRef(message.sender_bpmn_id, task.task_spec.bpmn_name if task else None)
        sender.log.add("message_sent", task=ref, **message.record(), to_instance=to_instance)


def newest_definitions(session: Session) -> list[ProcessDefinition]:
    """The newest deployed version of every process."""
    newest = select(ProcessDefinition.process_id, func.max(ProcessDefinition.version).label("v")) \
        .group_by(ProcessDefinition.process_id).subquery()
    return list(session.scalars(select(ProcessDefinition).join(newest, (
        ProcessDefinition.process_id == newest.c.process_id) & (ProcessDefinition.version == newest.c.v))
        .order_by(ProcessDefinition.process_id)))


def message_starts(session: Session, name: str) -> list[tuple[ProcessDefinition, str]]:
    """The newest version of each process with a message start event for `name`."""
    from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition

    return [(definition, bpmn_id) for definition in newest_definitions(session)
            for bpmn_id, event in runtime.start_events(session, definition, MessageEventDefinition)
            if event.name == name]
