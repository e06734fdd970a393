"""The Python SDK, natively: a step runs against the fake host and its
effects, refusals and failures come back as journeyd would record them.
Run: python3 -m unittest discover -s sdk/python/tests"""

import pathlib
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "sdk/python"))
sys.path.insert(0, str(ROOT / "tests/fixtures/python/sdk-greet"))

from app import greet  # noqa: E402
from journey_sdk import Outcome, StepFailed, Window  # noqa: E402
from journey_sdk.testing import run_step  # noqa: E402


class GreetTest(unittest.TestCase):
    def test_greets_on_the_preferred_channel_and_waits_for_a_reply(self):
        result = run_step(
            greet,
            config={"greeting": "Hi"},
            state={"greetings": 2},
            customer={"profile": {"name": "Ada"}, "channels": {"sms": True}},
        )
        self.assertIsNone(result.error)
        self.assertEqual(
            result.outcome, Outcome.wait_for_event("greeting.replied", 3_600_000, "replied", "silent")
        )
        self.assertEqual([(m.channel, m.body) for m in result.messages], [("sms", "Hi, Ada!")])
        self.assertEqual(result.state, {"greetings": 3, "sent": "test-key/m0"})
        self.assertEqual(result.notes[0]["kind"], "greeted")
        self.assertEqual(result.metrics, {"greetings": 1})

    def test_a_frequency_cap_is_a_decision_not_a_failure(self):
        result = run_step(greet, customer={"profile": {}}, caps={"email": 0})
        self.assertEqual(result.outcome, Outcome.goto("capped"))
        self.assertEqual(result.messages, [])
        self.assertEqual(len(result.refused), 1)
        self.assertIn("frequency cap is reached", result.logs[0][1])

    def test_a_bug_fails_the_attempt_with_its_traceback_and_commits_nothing(self):
        def broken(ctx):
            ctx.note("web", "x", "before the bug")
            return ctx.config["missing"]

        result = run_step(broken)
        self.assertIsNone(result.outcome)
        self.assertIn("KeyError: 'missing'", result.error)
        self.assertEqual(result.notes, [])

    def test_windows_parse_like_journey_configs(self):
        self.assertEqual(Window.parse("09:00-20:00 Europe/Amsterdam"), Window(540, 1200, "Europe/Amsterdam"))
        with self.assertRaises(StepFailed):
            Window.parse("9-20")


if __name__ == "__main__":
    unittest.main()
