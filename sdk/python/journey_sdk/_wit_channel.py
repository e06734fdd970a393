"""The glue to the bindings componentize-py generates for the
`channel-plugin` world: the `channel` export over plain functions.
Imported only inside the component."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Callable, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import channel as wit

from journey_sdk.channel import Rejected, Verdict

_STATUSES = {status.name.lower(): status for status in wit.DeliveryStatus}


def _parsed(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message(message: wit.OutgoingMessage) -> SimpleNamespace:
    fields = {name: getattr(message, name) for name in message.__dataclass_fields__}
    fields["metadata"] = _parsed(message.metadata)
    return SimpleNamespace(**fields)


def _verdict(verdict: Verdict) -> wit.Verdict:
    if verdict.kind == "accepted":
        return wit.Verdict_Accepted(verdict.provider_id)
    if verdict.kind == "retry":
        return wit.Verdict_Retry(wit.RetryLater(verdict.reason, verdict.after_ms))
    return wit.Verdict_Rejected(verdict.reason)


def export(render: Callable, interpret: Optional[Callable], parse_callback: Optional[Callable]) -> type:
    """A `wit_world.exports.Channel` class over the three functions."""

    class Channel(exports.Channel):
        def render(self, message: wit.OutgoingMessage, config: str) -> wit.ProviderRequest:
            try:
                request = render(_message(message), _parsed(config))
            except Rejected as rejected:
                raise Err(wit.RenderError_Rejected(str(rejected))) from None
            except Exception as error:
                raise Err(wit.RenderError_Misconfigured(f"{type(error).__name__}: {error}")) from None
            return wit.ProviderRequest(
                method=request.method,
                url=request.url,
                headers=[wit.Header(name, value) for name, value in request.headers],
                body=request.body,
                signature=None
                if request.signature is None
                else wit.Signature_StandardWebhooks(request.signature),
            )

        def interpret(
            self, message: wit.OutgoingMessage, response: wit.ProviderResponse, config: str
        ) -> wit.Verdict:
            if interpret is None:
                return _verdict(Verdict.from_status(response.status))
            answer = SimpleNamespace(
                status=response.status,
                headers=[(header.name, header.value) for header in response.headers],
                body=response.body,
            )
            return _verdict(interpret(_message(message), answer, _parsed(config)))

        def parse_callback(self, callback: wit.Callback, config: str) -> list:
            if parse_callback is None:
                return []
            request = SimpleNamespace(
                headers=[(header.name, header.value) for header in callback.headers],
                body=callback.body,
            )
            try:
                updates = parse_callback(request, _parsed(config))
                unknown = [update.status for update in updates if update.status not in _STATUSES]
                if unknown:
                    raise ValueError(f"unknown status {unknown[0]!r} (one of {', '.join(_STATUSES)})")
            except Exception as error:
                raise Err(f"{type(error).__name__}: {error}") from None
            return [
                wit.StatusUpdate(
                    message_id=update.message_id,
                    provider_id=update.provider_id,
                    status=_STATUSES[update.status],
                    at_ms=update.at_ms,
                    detail=json.dumps(update.detail),
                )
                for update in updates
            ]

    return Channel
