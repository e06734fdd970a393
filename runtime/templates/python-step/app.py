"""Step `{{name}}`: greet the customer on their preferred channel, or go on
when a frequency cap says no.

Config: `greeting` (default "Hello"). Transitions: `sent`, `capped`.
"""

from journey_sdk import Context, Message, Outcome, SendRefused, export_step


def greet(ctx: Context) -> Outcome:
    customer = ctx.customer()
    name = customer.profile.get("name", "there")
    channel = "sms" if customer.opted_in("sms") else "email"
    ctx.set("greetings", ctx.get("greetings", 0) + 1)
    try:
        message_id = ctx.send(Message(channel, f"{ctx.config.get('greeting', 'Hello')}, {name}!"))
    except SendRefused as refused:
        ctx.warn(str(refused))
        return Outcome.goto("capped")
    ctx.set("greeting_message", message_id)
    return Outcome.goto("sent")


# The component's `step` export (None when run natively, as in tests).
Step = export_step(greet)
