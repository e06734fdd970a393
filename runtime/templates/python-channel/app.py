"""Channel `{{name}}`: deliver each message as a signed JSON POST to the
provider's URL and read its status callbacks; journeyd does all the I/O.

Config: `url` (where to POST), `secret` (the name of the secret that
signs, default `signing_key`). Set it up with
`journeyd integration set CHANNEL --plugin {{name}} --host HOST
--secret signing_key=env:VAR --config '{"url": "https://HOST/path"}'`.
"""

from journey_sdk.channel import Rejected, Request, StatusUpdate, Verdict, export_channel


def render(message, config):
    if not message.to:
        raise Rejected("the customer has no address")
    return (
        Request.post(config["url"])
        .json({"id": message.id, "to": message.to, "text": message.body})
        .signed_with(config.get("secret", "signing_key"))
    )


def interpret(message, response, config):
    return Verdict.from_status(response.status)


def parse_callback(callback, config):
    import json

    report = json.loads(callback.body)
    return [StatusUpdate(provider_id=report["message_id"], message_id=report["message_id"], status=report["status"])]


# The component's `channel` export (None when run natively, as in tests).
Channel = export_channel(render, interpret, parse_callback)
