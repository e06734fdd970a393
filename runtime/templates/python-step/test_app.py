"""The step's unit tests, natively: python3 -m unittest"""

import unittest

from app import greet
from journey_sdk import Outcome
from journey_sdk.testing import run_step


class GreetTest(unittest.TestCase):
    def test_greets_by_name_on_the_preferred_channel(self):
        result = run_step(
            greet,
            config={"greeting": "Hi"},
            customer={"profile": {"name": "Ada"}, "channels": {"sms": True}},
        )
        self.assertIsNone(result.error)
        self.assertEqual(result.outcome, Outcome.goto("sent"))
        self.assertEqual([(m.channel, m.body) for m in result.messages], [("sms", "Hi, Ada!")])
        self.assertEqual(result.state["greetings"], 1)

    def test_goes_on_when_a_frequency_cap_says_no(self):
        result = run_step(greet, caps={"email": 0})
        self.assertEqual(result.outcome, Outcome.goto("capped"))
        self.assertEqual(result.messages, [])


if __name__ == "__main__":
    unittest.main()
