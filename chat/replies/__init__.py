"""The reply's journey: from the send to the last reader.

`jobs` generates a reply (one asyncio task per reply, whatever connection asked for it) and
records how it ended; `streams` is the sequence-numbered log transports read (in memory, or Redis
across workers); `delivery` reads it for a transport, coalesced, from any offset; `writer` saves
every live reply's progress together and runs starts and endings on one thread; `db_threads` are
the threads a reply's reads run on; `workers` is this process's heartbeat and sweeper (replies of
dead workers are ended there); `lifecycle` hooks it into Daphne's start and shutdown; `titles`
names a conversation after its first reply.
"""
