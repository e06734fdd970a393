"""The next-best-channel model, shared by the step (app.py) and the
training script (train.py): the features of a customer, and a logistic
regression per channel giving the chance they register after a reminder
on that channel. Pure Python: it runs inside the component too."""

import math

#: The channels the webinar can course-correct to.
CHANNELS = ("email", "sms")

#: Feature names, in the order of each channel's weights.
FEATURES = (
    "email_opens",
    "email_clicks",
    "sms_clicks",
    "days_since_engagement",
    "opted_in_sms",
    "opted_out_email",
)

DAY_MS = 86_400_000


def features(engagement: list, channels: dict, now_ms: int) -> list:
    """The feature vector of a customer from their view: engagement counts
    per channel (scaled), days since their last engagement (capped at 60,
    scaled), and their channel choices."""
    opens = sum(1 for item in engagement if item["channel"] == "email" and item["action"] == "opened")
    clicks = sum(1 for item in engagement if item["channel"] == "email" and item["action"] == "clicked")
    sms_clicks = sum(1 for item in engagement if item["channel"] == "sms" and item["action"] == "clicked")
    last = max((item["at_ms"] for item in engagement), default=None)
    days = 60.0 if last is None else min(60.0, max(0.0, (now_ms - last) / DAY_MS))
    return [
        min(opens, 20) / 10.0,
        min(clicks, 20) / 10.0,
        min(sms_clicks, 20) / 10.0,
        days / 30.0,
        1.0 if channels.get("sms") is True else 0.0,
        1.0 if channels.get("email") is False else 0.0,
    ]


def probability(weights: dict, x: list) -> float:
    """sigmoid(bias + w · x) for one channel's weights
    `{"bias": b, "weights": [w...]}`."""
    z = weights["bias"] + sum(w * value for w, value in zip(weights["weights"], x))
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
