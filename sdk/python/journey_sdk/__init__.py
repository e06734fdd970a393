"""Write journey steps for journeyd in Python.

A step is a function from a `Context` to an `Outcome`; `export_step` turns
it into the component's `step` export:

    from journey_sdk import Context, Message, Outcome, export_step

    def greet(ctx: Context) -> Outcome:
        name = ctx.customer().profile.get("name", "there")
        ctx.send(Message("email", f"{ctx.config['greeting']}, {name}!"))
        ctx.set("greeted", True)
        return Outcome.goto("done")

    Step = export_step(greet)

Build it with componentize-py against the repository's `wit/` folder
(`sdk/python/build.sh DIR OUT.wasm`), test it natively with
`journey_sdk.testing`. The SDK mirrors the Rust one (`sdk/src/lib.rs`):
typed access to config, event data and instance state, the customer view,
sending, notes, metrics and logs, all through the host imports; it never
talks to the outside world itself.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

__all__ = [
    "Context",
    "CustomerView",
    "Event",
    "Message",
    "Outcome",
    "SendRefused",
    "StepFailed",
    "Window",
    "export_step",
]


class StepFailed(Exception):
    """Raise to fail this attempt with a reason (the journey step's retry
    policy runs it again). Any other exception fails the attempt too, with
    its traceback as the reason."""


class SendRefused(Exception):
    """The host did not queue a message: a frequency cap was reached
    (`cap` says which) or the step already queued the most messages a step
    may (`cap` is None)."""

    def __init__(self, cap: Optional[dict] = None):
        self.cap = cap
        if cap is None:
            text = "the step already queued the most messages a step may"
        else:
            text = (
                f"the customer's {cap['channel']} frequency cap is reached "
                f"({cap['limit']} per {cap['period_ms'] // 1000} s; the next message "
                f"is allowed at {cap['next_allowed_ms']} ms)"
            )
        super().__init__(text)


@dataclass(frozen=True)
class Window:
    """Hours of the local day in which a journey may contact a customer.
    `time_zone` empty means the customer's profile `time_zone`."""

    from_minute: int
    to_minute: int
    time_zone: str = ""

    @staticmethod
    def hours(start: int, end: int) -> "Window":
        return Window(start * 60, end * 60)

    @staticmethod
    def parse(text: str) -> "Window":
        """`"09:00-20:00"` or `"09:00-20:00 Europe/Amsterdam"`."""
        parts = text.strip().split(" ", 1)
        zone = parts[1].strip() if len(parts) > 1 else ""
        try:
            start, end = parts[0].split("-")

            def minute(clock: str) -> int:
                hours, minutes = (int(part) for part in clock.split(":"))
                if minutes >= 60 or hours * 60 + minutes > 1440:
                    raise ValueError(clock)
                return hours * 60 + minutes

            return Window(minute(start), minute(end), zone)
        except ValueError:
            raise StepFailed(
                f"sending window `{text}` is not `HH:MM-HH:MM` with an optional time zone"
            ) from None


@dataclass(frozen=True)
class Outcome:
    """Where the instance goes after the step. Build one with the static
    methods; `kind` is `goto`, `complete`, `fail`, `sleep_until` or
    `wait_for_event`."""

    kind: str
    transition: str = ""
    reason: str = ""
    until_ms: int = 0
    window: Optional[Window] = None
    event_kind: str = ""
    timeout_ms: int = 0
    on_event: str = ""
    on_timeout: str = ""

    @staticmethod
    def goto(transition: str) -> "Outcome":
        """Follow the named transition (`on.<name>` in the journey)."""
        return Outcome("goto", transition=transition)

    @staticmethod
    def complete() -> "Outcome":
        """The instance finished successfully."""
        return Outcome("complete")

    @staticmethod
    def fail(reason: str) -> "Outcome":
        """The instance failed, at once and without retries (a decision)."""
        return Outcome("fail", reason=reason)

    @staticmethod
    def sleep_until(until_ms: int, then: str, window: Optional[Window] = None) -> "Outcome":
        """Sleep until `until_ms` (durable timer), then follow `then`; with a
        window, a wake-up in quiet hours moves to the window's next opening."""
        return Outcome("sleep_until", transition=then, until_ms=until_ms, window=window)

    @staticmethod
    def wait_for_event(kind: str, timeout_ms: int, on_event: str, on_timeout: str) -> "Outcome":
        """Wait (durably) for an event of type `kind` about this instance."""
        return Outcome(
            "wait_for_event",
            event_kind=kind,
            timeout_ms=timeout_ms,
            on_event=on_event,
            on_timeout=on_timeout,
        )


@dataclass
class Message:
    """A message to queue with `Context.send`; `to` empty means the
    customer's address from their profile."""

    channel: str
    body: str
    subject: str = ""
    to: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """The event the step sees: the one that started the instance, or the
    one that ended its last wait. `data` is parsed."""

    id: str
    kind: str
    customer_id: str
    data: Any
    received_at_ms: int


@dataclass(frozen=True)
class CustomerView:
    """The single customer view. `interactions` and `engagement` are lists
    of dicts (oldest first), `channels` maps a channel to its opt-in."""

    id: str
    profile: dict
    interactions: list
    channels: dict
    engagement: list

    def opted_in(self, channel: str) -> Optional[bool]:
        """True or False when the customer chose; None when they never did."""
        return self.channels.get(channel)


class Host(Protocol):
    """What a step may ask of the host: `journey_sdk._wit.WitHost` in the
    component, `journey_sdk.testing.FakeHost` in native tests."""

    def view(self, max_interactions: int, kinds: list[str]) -> CustomerView: ...
    def note(self, channel: str, kind: str, text: str, details: dict) -> None: ...
    def send(self, message: Message) -> str: ...
    def count(self, name: str, value: int) -> None: ...
    def now_ms(self) -> int: ...
    def log(self, level: str, text: str) -> None: ...


class Context:
    """A running step: its input, and the host capabilities it may use.
    Effects (messages, notes, metrics) are committed with the step's
    outcome, or not at all."""

    def __init__(self, input: Any, host: Host):
        self._input = input
        self._host = host
        self._state: Optional[dict] = None
        self._state_changed = False

    @property
    def journey(self) -> str:
        return self._input.journey

    @property
    def step(self) -> str:
        return self._input.step

    @property
    def instance_id(self) -> str:
        return self._input.instance_id

    @property
    def attempt(self) -> int:
        """1 on the first attempt; more when the step is run again."""
        return self._input.attempt

    @property
    def idempotency_key(self) -> str:
        """The same on every attempt of this step execution."""
        return self._input.idempotency_key

    @property
    def event(self) -> Event:
        event = self._input.event
        return Event(event.id, event.kind, event.customer_id, json.loads(event.data), event.received_at_ms)

    @property
    def config(self) -> dict:
        """The step's `config` table from the journey definition."""
        return json.loads(self._input.config)

    def _loaded(self) -> dict:
        if self._state is None:
            self._state = json.loads(self._input.state)
        return self._state

    def get(self, key: str, default: Any = None) -> Any:
        """A value of the instance state (what earlier steps set)."""
        return self._loaded().get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Set a value of the instance state (committed with the step)."""
        self._loaded()[key] = value
        self._state_changed = True

    def customer(self, max_interactions: int = 0, kinds: Optional[list[str]] = None) -> CustomerView:
        """The customer view, with up to `max_interactions` recent
        interactions of the given kinds (any kind when none are given)."""
        return self._host.view(max_interactions, list(kinds or []))

    def note(self, channel: str, kind: str, text: str, details: Optional[dict] = None) -> None:
        """Add an interaction to the customer's history."""
        self._host.note(channel, kind, text, details or {})

    def send(self, message: Message) -> str:
        """Queue a message; returns its id. Raises `SendRefused` when a
        frequency cap is reached."""
        return self._host.send(message)

    def count(self, name: str, value: int = 1) -> None:
        """Add to a counter (`journeyd_plugin_<name>_total`)."""
        self._host.count(name, value)

    def now_ms(self) -> int:
        """The runtime's clock at the step's start (simulated or real)."""
        return self._host.now_ms()

    def info(self, text: str) -> None:
        self._host.log("info", text)

    def warn(self, text: str) -> None:
        self._host.log("warn", text)

    def state_if_changed(self) -> Optional[dict]:
        """The whole state if the step set anything, else None."""
        return self._state if self._state_changed else None


def run(step: Callable[[Context], Outcome], input: Any, host: Host) -> tuple[Outcome, Optional[dict]]:
    """Run `step` and return its outcome and changed state; an exception
    becomes `StepFailed` with its reason (the traceback, for a bug)."""
    ctx = Context(input, host)
    try:
        outcome = step(ctx)
    except StepFailed:
        raise
    except Exception:
        raise StepFailed(traceback.format_exc(limit=8).strip()) from None
    if not isinstance(outcome, Outcome):
        raise StepFailed(f"the step returned {outcome!r}, not an Outcome")
    return outcome, ctx.state_if_changed()


def export_step(step: Callable[[Context], Outcome]) -> Optional[type]:
    """The component's `step` export running `step`: assign it to a
    module-level `Step` in the app module componentize-py builds. Natively
    (no generated `wit_world` bindings, as in tests) there is nothing to
    export and it returns None, so the module still imports."""
    import importlib.util

    if importlib.util.find_spec("wit_world") is None:
        return None
    from journey_sdk._wit import export

    return export(step)
