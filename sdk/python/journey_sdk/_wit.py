"""The glue to the bindings componentize-py generates from `wit/`
(`wit_world`): the real host, and the `step` export. Imported only inside
the component; native tests use `journey_sdk.testing` instead."""

from __future__ import annotations

import json
from typing import Callable

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import clock, customer, log, metrics, outbox, types

from journey_sdk import (
    Context,
    CustomerView,
    Message,
    Outcome,
    SendRefused,
    StepFailed,
    run,
)

_LEVELS = {
    "debug": log.Level.DEBUG,
    "info": log.Level.INFO,
    "warn": log.Level.WARN,
    "error": log.Level.ERROR,
}


class WitHost:
    """The host imports of the step world."""

    def view(self, max_interactions: int, kinds: list[str]) -> CustomerView:
        view = customer.view(max_interactions, kinds)
        return CustomerView(
            id=view.id,
            profile=json.loads(view.profile) if view.profile else {},
            interactions=[
                {
                    "at_ms": item.at_ms,
                    "channel": item.channel,
                    "kind": item.kind,
                    "text": item.text,
                    "details": json.loads(item.details),
                }
                for item in view.interactions
            ],
            channels={choice.channel: choice.opted_in for choice in view.channels},
            engagement=[
                {
                    "at_ms": item.at_ms,
                    "action": item.action,
                    "channel": item.channel,
                    "event_kind": item.event_kind,
                    "details": json.loads(item.details),
                }
                for item in view.engagement
            ],
        )

    def note(self, channel: str, kind: str, text: str, details: dict) -> None:
        customer.note(channel, kind, text, json.dumps(details))

    def send(self, message: Message) -> str:
        try:
            return outbox.send(
                outbox.Message(
                    channel=message.channel,
                    to=message.to,
                    subject=message.subject,
                    body=message.body,
                    metadata=json.dumps(message.metadata),
                )
            )
        except Err as refused:
            if isinstance(refused.value, outbox.SendError_FrequencyCapped):
                cap = refused.value.value
                raise SendRefused(
                    {
                        "channel": cap.channel,
                        "limit": cap.limit,
                        "period_ms": cap.period_ms,
                        "next_allowed_ms": cap.next_allowed_ms,
                    }
                ) from None
            raise SendRefused(None) from None

    def count(self, name: str, value: int) -> None:
        metrics.count(name, value)

    def now_ms(self) -> int:
        return clock.now_ms()

    def log(self, level: str, text: str) -> None:
        log.write(_LEVELS.get(level, log.Level.INFO), text)


def _outcome(outcome: Outcome) -> types.Outcome:
    if outcome.kind == "goto":
        return types.Outcome_Goto(outcome.transition)
    if outcome.kind == "complete":
        return types.Outcome_Complete()
    if outcome.kind == "fail":
        return types.Outcome_Fail(outcome.reason)
    if outcome.kind == "sleep_until":
        window = outcome.window
        return types.Outcome_SleepUntil(
            types.SleepSpec(
                until_ms=outcome.until_ms,
                then=outcome.transition,
                window=None
                if window is None
                else types.SendingWindow(window.from_minute, window.to_minute, window.time_zone),
            )
        )
    return types.Outcome_WaitForEvent(
        types.WaitSpec(
            kind=outcome.event_kind,
            timeout_ms=outcome.timeout_ms,
            on_event=outcome.on_event,
            on_timeout=outcome.on_timeout,
        )
    )


def export(step: Callable[[Context], Outcome]) -> type:
    """A `wit_world.exports.Step` class that runs `step`."""

    class Step(exports.Step):
        def run(self, input: types.StepInput) -> types.StepOutput:
            try:
                outcome, state = run(step, input, WitHost())
            except StepFailed as failed:
                raise Err(str(failed)) from None
            return types.StepOutput(
                outcome=_outcome(outcome),
                state=None if state is None else json.dumps(state),
            )

    return Step
