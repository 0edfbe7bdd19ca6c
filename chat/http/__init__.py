"""What the app's HTTP transports share beneath them (the page's SSE views and the API): event
stream responses, and the server's send buffers they must not overfill."""
