"""The next-best-channel step natively, with the trained weights
(model.json, written by train.py): python3 -m unittest discover -s plugins/next-best-channel"""

import json
import pathlib
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "sdk/python"))

from app import decide  # noqa: E402
from journey_sdk import Outcome  # noqa: E402
from journey_sdk.testing import run_step  # noqa: E402

NOW = 1_796_112_000_000
DAY = 86_400_000
CONFIG = {
    "threshold": 0.08,
    "email": {"subject": "Last chance: {title}", "template": "{name}, {title} starts soon: {join_url}"},
    "sms": {"template": "{name}, {title} is live soon: {join_url}"},
    "model": json.loads((HERE / "model.json").read_text())["model"],
}
TRIGGER = {"kind": "webinar.invited", "data": {"webinar_id": "w-1", "title": "Rates 101", "join_url": "https://j/1"}}


def engagement(channel, action, days_ago, webinar="w-0"):
    return {"channel": channel, "action": action, "at_ms": NOW - days_ago * DAY, "event_kind": f"{channel}.{action}", "details": {"webinar_id": webinar}}


def run(customer):
    return run_step(decide, config=CONFIG, event=TRIGGER, customer=customer, now_ms=NOW)


class NextBestChannelTest(unittest.TestCase):
    def test_a_reader_of_emails_gets_an_email(self):
        result = run({"profile": {"name": "Ada"}, "engagement": [engagement("email", "opened", d) for d in range(1, 9)] + [engagement("email", "clicked", 2)]})
        self.assertEqual(result.outcome, Outcome.goto("email"), result.state)
        self.assertEqual(result.messages[0].subject, "Last chance: Rates 101")
        self.assertEqual(result.state["next_best_channel"]["decision"], "email")

    def test_an_sms_clicker_who_opted_in_gets_an_sms(self):
        result = run({"profile": {"name": "Bo"}, "channels": {"sms": True}, "engagement": [engagement("sms", "clicked", d) for d in (1, 3, 5)]})
        self.assertEqual(result.outcome, Outcome.goto("sms"), result.state)
        self.assertEqual(result.messages[0].body, "Bo, Rates 101 is live soon: https://j/1")

    def test_nobody_is_texted_without_an_opt_in(self):
        result = run({"profile": {}, "engagement": [engagement("sms", "clicked", d) for d in (1, 3, 5)]})
        self.assertNotIn("sms", result.state["next_best_channel"]["chances"])
        self.assertNotEqual(result.outcome, Outcome.goto("sms"))

    def test_a_cold_customer_is_left_alone(self):
        result = run({"profile": {"name": "Cy"}})
        self.assertEqual(result.outcome, Outcome.goto("stop"), result.state)
        self.assertEqual(result.messages, [])

    def test_engagement_with_this_webinar_needs_no_reminder(self):
        result = run_step(
            decide,
            config=CONFIG,
            event=TRIGGER,
            state={"context": TRIGGER["data"], "started_at_ms": NOW - 3 * DAY},
            customer={"engagement": [engagement("email", "opened", 1, webinar="w-1")]},
            now_ms=NOW,
        )
        self.assertEqual(result.outcome, Outcome.goto("engaged"))
        self.assertEqual(result.messages, [])

    def test_training_reproduces_the_shipped_model_which_ranks_held_out_customers_well(self):
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            out = pathlib.Path(scratch) / "model.json"
            subprocess.run([sys.executable, str(HERE / "train.py"), "--out", str(out)], check=True, capture_output=True)
            trained = json.loads(out.read_text())
        self.assertEqual(trained, json.loads((HERE / "model.json").read_text()))
        for channel in ("email", "sms"):
            self.assertGreater(trained["held_out"][channel]["auc"], 0.7, channel)


if __name__ == "__main__":
    unittest.main()
