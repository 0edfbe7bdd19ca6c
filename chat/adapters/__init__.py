"""The few places the app reaches into a library's internals, one adapter each.

Each names the internal it uses and degrades to something safe when it is gone;
tests/ops/test_library_internals.py fails loudly when a pinned library changes it
(requirements.lock pins Daphne, Twisted, Django and redis-py exactly).
"""
