"""A live room: what every member's page of a shared conversation hears as it happens — who is
here, who is typing, a member's send, a removal — through the Channels layer's groups. Never
tokens: members read a reply's stream like any other reader (chat/replies/)."""
