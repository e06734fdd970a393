"""Channel plugins in Python: the request builder, verdicts and status
updates of the `channel` interface, and `export_channel`, which turns
three plain functions into the component's `channel` export.

    from journey_sdk.channel import Request, Verdict, export_channel

    def render(message, config):
        return Request.post(config["url"]).json({"text": message.body})

    Channel = export_channel(render)

`render(message, config)` gets the message (`id`, `channel`, `to`,
`subject`, `body`, `metadata` (parsed), `customer_id`, `journey`,
`instance_id`, `step`, `attempt`) and the integration's config (parsed)
and returns a `Request`; raising `Rejected` makes the message dead, any
other exception fails the attempt as misconfigured (it is retried).
`interpret(message, response, config)` returns a `Verdict` (default: by
status); `parse_callback(callback, config)` returns `StatusUpdate`s
(default: none). A channel plugin has no host imports: it is a pure
function of its input, safe to call again on every retry, and these
functions run natively in tests as they are. Secrets are named in URLs and
header values as `{{secret:NAME}}`; the host fills them in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = ["Rejected", "Request", "StatusUpdate", "Verdict", "export_channel"]


class Rejected(Exception):
    """Raise from `render` when this message can never be sent."""


@dataclass
class Request:
    """A provider request."""

    method: str
    url: str
    headers: list = field(default_factory=list)
    body: str = ""
    signature: Optional[str] = None

    @staticmethod
    def post(url: str) -> "Request":
        return Request("POST", url)

    def header(self, name: str, value: str) -> "Request":
        """Add a header (its value may name secrets as `{{secret:NAME}}`)."""
        self.headers.append((name, value))
        return self

    def json(self, value: Any) -> "Request":
        """A JSON body, with its content type."""
        self.body = json.dumps(value)
        return self.header("Content-Type", "application/json")

    def signed_with(self, secret: str) -> "Request":
        """Ask the host to sign it (Standard Webhooks) with the
        integration's secret of this name."""
        self.signature = secret
        return self


@dataclass(frozen=True)
class Verdict:
    """What a provider's answer means: `accepted` (with the provider's id
    for the message, if it gave one), `retry` (at least `after_ms` later,
    when given) or `rejected` (the message is dead)."""

    kind: str
    provider_id: Optional[str] = None
    reason: str = ""
    after_ms: Optional[int] = None

    @staticmethod
    def accepted(provider_id: Optional[str] = None) -> "Verdict":
        return Verdict("accepted", provider_id=provider_id)

    @staticmethod
    def retry(reason: str, after_ms: Optional[int] = None) -> "Verdict":
        return Verdict("retry", reason=reason, after_ms=after_ms)

    @staticmethod
    def rejected(reason: str) -> "Verdict":
        return Verdict("rejected", reason=reason)

    @staticmethod
    def from_status(status: int, provider_id: Optional[str] = None) -> "Verdict":
        """2xx accepted; 408, 425, 429 and 5xx retried; others refused."""
        if 200 <= status < 300:
            return Verdict.accepted(provider_id)
        if status in (408, 425, 429) or 500 <= status < 600:
            return Verdict.retry(f"the provider answered {status}")
        return Verdict.rejected(f"the provider refused the message ({status})")


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery status from a callback: `status` is `delivered`,
    `opened`, `clicked`, `bounced` or `failed`."""

    provider_id: str
    status: str
    message_id: Optional[str] = None
    at_ms: Optional[int] = None
    detail: dict = field(default_factory=dict)


def export_channel(
    render: Callable,
    interpret: Optional[Callable] = None,
    parse_callback: Optional[Callable] = None,
) -> Optional[type]:
    """The component's `channel` export: assign it to a module-level
    `Channel` in the app module. Natively (no generated bindings) it
    returns None, so the module still imports."""
    import importlib.util

    if importlib.util.find_spec("wit_world") is None:
        return None
    from journey_sdk._wit_channel import export

    return export(render, interpret, parse_callback)
