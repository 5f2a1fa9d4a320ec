"""The stack's data outlives the stack: a restart (compose: down + up, the volume kept) keeps it."""

import uuid

from .stack import Site


def test_messages_survive_a_restart_of_the_stack(site, target):
    """Tests that a message posted before the whole stack is stopped and started again is still served."""
    text = f"kept across restarts {uuid.uuid4().hex[:8]}"
    message = site.post_message(text)

    target.restart_stack()

    after = Site(target).get(f"/api/messages?after={message['id'] - 1}&limit=1").json()["messages"]
    assert [(m["id"], m["text"]) for m in after] == [(message["id"], text)]
