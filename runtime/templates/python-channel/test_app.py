"""The channel's unit tests, natively: python3 -m unittest"""

import unittest
from types import SimpleNamespace

from app import interpret, parse_callback, render
from journey_sdk.channel import Rejected


def message(to):
    return SimpleNamespace(id="i-1/s/1/m0", channel="chat", to=to, subject="", body="Hello", metadata={})


class ChannelTest(unittest.TestCase):
    def test_renders_a_signed_post_and_refuses_a_message_without_an_address(self):
        request = render(message("+15550100"), {"url": "https://provider.example/messages"})
        self.assertEqual((request.method, request.url), ("POST", "https://provider.example/messages"))
        self.assertIn("+15550100", request.body)
        self.assertEqual(request.signature, "signing_key")
        with self.assertRaises(Rejected):
            render(message(""), {"url": "https://provider.example/messages"})

    def test_reads_answers_and_callbacks(self):
        self.assertEqual(interpret(message("x"), SimpleNamespace(status=503, headers=[], body=""), {}).kind, "retry")
        updates = parse_callback(SimpleNamespace(headers=[], body='{"message_id": "m", "status": "delivered"}'), {})
        self.assertEqual([(u.provider_id, u.status) for u in updates], [("m", "delivered")])


if __name__ == "__main__":
    unittest.main()
