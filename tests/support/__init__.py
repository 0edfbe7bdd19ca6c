"""Code the tests run against but that is not a test: servers started as subprocesses, fake
upstreams and issuers, and the small readers of what the transports send. Only conftest.py files
import it; tests reach it through their fixtures."""
