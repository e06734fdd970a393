"""Webinar step `next-best-channel` (Python): when the customer ignored
the invitations, decide where the journey course-corrects (a reminder by
email, one by SMS, or stop) with a propensity model, and send it.

```toml
[steps.config]
about = "webinar_id"                          # context key the engagement must be about (default)
engaged = ["opened", "clicked", "registered"] # actions that count as engaged (default)
threshold = 0.08                              # below this chance on every channel: stop
email = { subject = "Last chance: {title}", template = "{name}, ... {join_url}" }
sms = { template = "{name}, {title} is live soon: {join_url}" }
model = { email = { bias = -2.33, weights = [...] }, sms = { bias = -0.64, weights = [...] } }
```

The model (model.py) is a logistic regression per channel over the
customer's engagement (email opens and clicks, SMS clicks, days since
they last engaged) and channel choices, trained by train.py; its weights
are the config's `model`. SMS is a candidate only for customers who
opted in, email only for those who did not opt out. Transitions:
`engaged` (they engaged with this webinar since the journey began:
nothing is sent), `email`, `sms` (the reminder went out there), `capped`
(a frequency cap refused it) and `stop` (no channel is worth a message).
The decision, the chances and the features are kept in state
`next_best_channel` and logged.
"""

import re

from journey_sdk import Context, Message, Outcome, SendRefused, StepFailed, export_step
from model import FEATURES, features, probability


def ensure_context(ctx: Context) -> dict:
    """The trigger's data, saved on the first plugin step of the instance
    (as the Rust plugins do), with when the journey began."""
    context = ctx.get("context")
    if context is None:
        context = ctx.event.data if isinstance(ctx.event.data, dict) else {}
        ctx.set("context", context)
        ctx.set("started_at_ms", ctx.event.received_at_ms)
    return context


def fill(template: str, *sources: dict) -> str:
    def value(match: re.Match) -> str:
        for source in sources:
            found = source.get(match.group(1))
            if found is not None:
                return found if isinstance(found, str) else str(found)
        return "there" if match.group(1) == "name" else match.group(0)

    return re.sub(r"\{([A-Za-z0-9_]+)\}", value, template)


def decide(ctx: Context) -> Outcome:
    config = ctx.config
    if "model" not in config:
        raise StepFailed("config: `model` (the weights train.py prints) is missing")
    context = ensure_context(ctx)
    customer = ctx.customer()
    about = config.get("about", "webinar_id")
    engaged_actions = set(config.get("engaged", ["opened", "clicked", "registered"]))
    since = ctx.get("started_at_ms", 0)
    this_webinar = context.get(about)
    if any(
        item["action"] in engaged_actions
        and item["at_ms"] >= since
        and item["details"].get(about) == this_webinar
        for item in customer.engagement
    ):
        ctx.set("next_best_channel", {"decision": "engaged"})
        return Outcome.goto("engaged")

    x = features(customer.engagement, customer.channels, ctx.now_ms())
    candidates = {}
    if customer.opted_in("email") is not False:
        candidates["email"] = probability(config["model"]["email"], x)
    if customer.opted_in("sms") is True:
        candidates["sms"] = probability(config["model"]["sms"], x)
    chances = {channel: round(p, 4) for channel, p in candidates.items()}
    best = max(candidates, key=candidates.get, default=None)
    threshold = config.get("threshold", 0.08)
    decision = best if best is not None and candidates[best] >= threshold else "stop"
    ctx.set(
        "next_best_channel",
        {"decision": decision, "chances": chances, "features": dict(zip(FEATURES, x))},
    )
    ctx.info(f"next best channel: {decision} (chances {chances}, threshold {threshold})")
    if decision == "stop":
        return Outcome.goto("stop")

    message_config = config.get(decision, {})
    if "template" not in message_config:
        raise StepFailed(f"config: `{decision}.template` is missing")
    data = ctx.event.data if isinstance(ctx.event.data, dict) else {}
    message = Message(
        decision,
        fill(message_config["template"], data, context, customer.profile),
        subject=fill(message_config.get("subject", ""), data, context, customer.profile),
        metadata={"journey": ctx.journey, about: this_webinar},
    )
    try:
        message_id = ctx.send(message)
    except SendRefused as refused:
        ctx.warn(f"not sent: {refused}")
        return Outcome.goto("capped")
    ctx.set("last_message", message_id)
    ctx.note(decision, "message.sent", message.subject or message.body, {"message_id": message_id})
    return Outcome.goto(decision)


Step = export_step(decide)
