"""Room events as each viewer's page gets them (chat/web/rooms.py)."""

from __future__ import annotations

import uuid

from chat.rooms.events import presence_event
from chat.rooms.presence import Change, Present
from chat.web import rooms


def test_a_presence_change_is_rendered_once_however_many_connections_hear_it(room_renders):
    # Every connection of the room gets the list of who is here with its own person marked.
    # Rendered whole for each connection, a change cost O(people here) per connection, so
    # O(people²) in all: ~35 ms of the server's core for one change in a room of 30
    # (benchmarks/room_fanout.py). Now a change is rendered once in a process, and a person's
    # chip once (both ways), not again for each change.
    tag = uuid.uuid4().hex[:6]
    people = [Present(n, f"Person {n} {tag}") for n in range(1, 11)]

    def heard_by(viewers) -> tuple[int, dict[int, str]]:
        event = presence_event(uuid.uuid4(), Change(people, joined=people[-1]))
        room_renders.clear()
        pages = {viewer: rooms.presence_fragment(event, viewer_id=viewer) for viewer in viewers}
        return len(room_renders), pages

    first, _ = heard_by(range(1, 3))
    assert first == 1 + 2 * len(people)  # the list, and each chip as the others and as its own
    then, pages = heard_by(range(1, 11))
    assert then == 1  # only the list
    for viewer, page in pages.items():
        assert page.count("presence-chip") == 10
        assert page.count("is-self") == 1
        assert page.count(f"Person {viewer} {tag} (you)") == 2  # its title and hidden label
        assert page.count("(you)") == 2
        assert f"Person 10 {tag} joined" in page
