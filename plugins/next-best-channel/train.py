"""Train the next-best-channel model and print its weights as the step's
config, with accuracy and AUC on held-out data.

    python3 plugins/next-best-channel/train.py [--customers N] [--seed S] [--out model.json]

The data is generated here, from a ground truth the model does not see:
each customer has a hidden liking for email and for SMS; their engagement
history (opens, clicks, recency) and channel choices follow from it, as
does whether a reminder on a channel gets them to register. Half the
reminders went by email and half by SMS (an experiment, so both models
have data), SMS only to customers who opted in. Per channel, a logistic
regression is fitted by gradient descent on 75% of the customers and
scored on the other 25%. Pure Python, deterministic for a seed.
"""

import argparse
import json
import math
import random

from model import CHANNELS, DAY_MS, FEATURES, features, probability

NOW_MS = 1_796_112_000_000


def customer(rng: random.Random) -> tuple:
    """One synthetic customer: their view's engagement and channels, and a
    function telling whether a reminder on a channel makes them register."""
    email_liking = rng.gauss(0.0, 1.0)
    sms_liking = rng.gauss(-0.3, 1.0)
    activity = rng.random()
    engagement = []
    for _ in range(int(activity * 12 * (1 + max(0.0, email_liking)))):
        action = "opened" if rng.random() < 0.7 else "clicked"
        engagement.append({"channel": "email", "action": action, "at_ms": NOW_MS - int(rng.random() * (1 - activity) * 60 * DAY_MS)})
    for _ in range(int(activity * 6 * max(0.0, sms_liking))):
        engagement.append({"channel": "sms", "action": "clicked", "at_ms": NOW_MS - int(rng.random() * 40 * DAY_MS)})
    channels = {}
    if rng.random() < 1 / (1 + math.exp(-(sms_liking + 0.2))):
        channels["sms"] = True
    if email_liking < -1.2 and rng.random() < 0.5:
        channels["email"] = False
    recency = min((NOW_MS - item["at_ms"]) / DAY_MS for item in engagement) if engagement else 60.0

    def registers(channel: str) -> bool:
        if channel == "email":
            if channels.get("email") is False:
                return False
            z = -2.2 + 1.1 * email_liking + 1.5 * activity - 0.03 * recency
        else:
            if channels.get("sms") is not True:
                return False
            z = -1.9 + 1.2 * sms_liking + 0.8 * activity - 0.02 * recency
        return rng.random() < 1 / (1 + math.exp(-z))

    return engagement, channels, registers


def fit(rows: list, epochs: int = 400, rate: float = 0.5, l2: float = 1e-3) -> dict:
    """Logistic regression by batch gradient descent."""
    weights, bias = [0.0] * len(FEATURES), 0.0
    for _ in range(epochs):
        gradient, gradient_bias = [0.0] * len(FEATURES), 0.0
        for x, y in rows:
            error = probability({"bias": bias, "weights": weights}, x) - y
            gradient_bias += error
            for i, value in enumerate(x):
                gradient[i] += error * value
        n = len(rows)
        bias -= rate * gradient_bias / n
        weights = [w - rate * (g / n + l2 * w) for w, g in zip(weights, gradient)]
    return {"bias": round(bias, 4), "weights": [round(w, 4) for w in weights]}


def auc(scored: list) -> float:
    """The area under the ROC curve: the chance a random positive scores
    above a random negative (ties count half)."""
    positives = [p for p, y in scored if y]
    negatives = [p for p, y in scored if not y]
    if not positives or not negatives:
        return float("nan")
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="also write the result to this JSON file")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    data = {channel: [] for channel in CHANNELS}
    for _ in range(args.customers):
        engagement, channels, registers = customer(rng)
        x = features(engagement, channels, NOW_MS)
        # The experiment: SMS only where the customer opted in.
        channel = "sms" if channels.get("sms") and rng.random() < 0.5 else "email"
        data[channel].append((x, 1 if registers(channel) else 0))
    model, report = {}, {}
    for channel, rows in data.items():
        cut = len(rows) * 3 // 4
        train, held_out = rows[:cut], rows[cut:]
        model[channel] = fit(train)
        scored = [(probability(model[channel], x), y) for x, y in held_out]
        accuracy = sum((p >= 0.5) == bool(y) for p, y in scored) / len(scored)
        base_rate = sum(y for _, y in held_out) / len(held_out)
        report[channel] = {
            "train": len(train),
            "held_out": len(held_out),
            "registered_share": round(base_rate, 3),
            "accuracy": round(accuracy, 3),
            "auc": round(auc(scored), 3),
        }
    result = json.dumps({"features": list(FEATURES), "model": model, "held_out": report}, indent=2)
    print(result)
    if args.out:
        with open(args.out, "w") as out:
            out.write(result + "\n")


if __name__ == "__main__":
    main()
