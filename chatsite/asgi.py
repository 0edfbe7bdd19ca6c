from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chat.costs.budgets import anonymous_caps_notice_log  # noqa: E402
from chat.http.backpressure import BufferedBytesMiddleware  # noqa: E402
from chat.web.origins import SameOriginValidator  # noqa: E402
from chat.web.routing import websocket_urlpatterns  # noqa: E402
from chatsite.serving.lifecycle import install_shutdown_hook  # noqa: E402
from chatsite.serving.request_threads import RequestThreads  # noqa: E402

install_shutdown_hook()
# The operator hears, in each worker's log, how anonymous use of paid models is capped.
anonymous_caps_notice_log()

application = BufferedBytesMiddleware(
    # Each request's and socket's sync work on a thread of its own, reused once it is done.
    RequestThreads(
        ProtocolTypeRouter(
            {
                # Static files are served by WhiteNoise inside Django (chatsite/serving/static.py).
                "http": django_asgi_app,
                # The Origin must be the site's own (scheme, host and port), as for a POST: see
                # chat/web/origins.py for why Channels' host-only check is not enough.
                "websocket": SameOriginValidator(
                    AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
                ),
            }
        ),
        size=settings.CHAT_REQUEST_THREADS,
    )
)

# Everything loaded so far (Django, the app, the SDKs: ~200,000 objects) lives as long as the
# process. Frozen, the garbage collector no longer walks it: a full collection took ~200 ms
# under load, every stream of the worker stalled meanwhile (docs/journal.md, the third pass).
gc.freeze()
