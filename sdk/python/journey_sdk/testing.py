"""Run a step natively, without a component, a server or a store: a fake
host stands in for journeyd's, with a customer view, frequency caps and a
clock you choose, and records what the step did.

    from journey_sdk.testing import run_step

    result = run_step(greet, config={"greeting": "Hi"}, customer={"profile": {"name": "Ada"}})
    assert result.outcome == Outcome.goto("done")
    assert result.messages[0].body == "Hi, Ada!"

It runs the same `journey_sdk.run` the component runs, so what passes here
is what the step does in journeyd, short of the sandbox's limits (try the
built component with `journeyd step run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Optional

from journey_sdk import Context, CustomerView, Message, Outcome, SendRefused, StepFailed, run

__all__ = ["FakeHost", "StepResult", "run_step"]

#: The most messages one step may queue (as in journeyd).
MAX_MESSAGES = 16


class FakeHost:
    """Stands in for journeyd's host imports and records every effect.
    `caps` maps a channel to how many more messages its frequency cap
    allows (a channel not named is uncapped)."""

    def __init__(
        self,
        customer: Optional[dict] = None,
        caps: Optional[dict] = None,
        now_ms: int = 1_796_112_000_000,
        idempotency_key: str = "test-key",
    ):
        customer = customer or {}
        self.customer = CustomerView(
            id=customer.get("id", "c-test"),
            profile=customer.get("profile", {}),
            interactions=customer.get("interactions", []),
            channels=customer.get("channels", {}),
            engagement=customer.get("engagement", []),
        )
        self.caps = dict(caps or {})
        self.clock = now_ms
        self.key = idempotency_key
        self.messages: list[Message] = []
        self.message_ids: list[str] = []
        self.refused: list[Message] = []
        self.notes: list[dict] = []
        self.metrics: dict[str, int] = {}
        self.logs: list[tuple[str, str]] = []

    def view(self, max_interactions: int, kinds: list[str]) -> CustomerView:
        interactions = [
            item for item in self.customer.interactions if not kinds or item.get("kind") in kinds
        ]
        return CustomerView(
            id=self.customer.id,
            profile=self.customer.profile,
            interactions=interactions[-max_interactions:] if max_interactions else [],
            channels=self.customer.channels,
            engagement=self.customer.engagement,
        )

    def note(self, channel: str, kind: str, text: str, details: dict) -> None:
        json.dumps(details)  # must be JSON, as the host checks
        self.notes.append({"channel": channel, "kind": kind, "text": text, "details": details})

    def send(self, message: Message) -> str:
        if len(self.messages) >= MAX_MESSAGES:
            raise SendRefused(None)
        left = self.caps.get(message.channel)
        if left is not None and left <= 0:
            self.refused.append(message)
            raise SendRefused(
                {
                    "channel": message.channel,
                    "limit": 0,
                    "period_ms": 86_400_000,
                    "next_allowed_ms": self.clock + 86_400_000,
                }
            )
        if left is not None:
            self.caps[message.channel] = left - 1
        self.messages.append(message)
        message_id = f"{self.key}/m{len(self.messages) - 1}"
        self.message_ids.append(message_id)
        return message_id

    def count(self, name: str, value: int) -> None:
        self.metrics[name] = self.metrics.get(name, 0) + value

    def now_ms(self) -> int:
        return self.clock

    def log(self, level: str, text: str) -> None:
        self.logs.append((level, text))


@dataclass
class StepResult:
    """What one run did. `error` is the failure's reason when the attempt
    failed (then `outcome` is None and no effect would be committed)."""

    outcome: Optional[Outcome]
    state: Optional[dict]
    error: Optional[str]
    messages: list[Message] = field(default_factory=list)
    refused: list[Message] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)
    metrics: dict[str, int] = field(default_factory=dict)
    logs: list[tuple[str, str]] = field(default_factory=list)


def run_step(
    step: Callable[[Context], Outcome],
    *,
    config: Optional[dict] = None,
    state: Optional[dict] = None,
    event: Optional[dict] = None,
    customer: Optional[dict] = None,
    caps: Optional[dict] = None,
    now_ms: int = 1_796_112_000_000,
    attempt: int = 1,
    journey: str = "test",
    name: str = "step",
) -> StepResult:
    """Run `step` once against a `FakeHost` and return what it did."""
    host = FakeHost(customer=customer, caps=caps, now_ms=now_ms)
    event = event or {}
    input = SimpleNamespace(
        journey=journey,
        journey_version=1,
        instance_id="i-1",
        step=name,
        event=SimpleNamespace(
            id=event.get("id", "evt-1"),
            kind=event.get("kind", "test.event"),
            customer_id=host.customer.id,
            data=json.dumps(event.get("data", {})),
            received_at_ms=now_ms,
        ),
        state=json.dumps(state or {}),
        config=json.dumps(config or {}),
        attempt=attempt,
        idempotency_key=host.key,
    )
    try:
        outcome, changed = run(step, input, host)
        error = None
    except StepFailed as failed:
        outcome, changed, error = None, None, str(failed)
    return StepResult(
        outcome=outcome,
        state=changed,
        error=error,
        messages=host.messages if error is None else [],
        refused=host.refused,
        notes=host.notes if error is None else [],
        metrics=host.metrics if error is None else {},
        logs=host.logs,
    )
