"""WebSocket routes. Consumers authenticate in connect() and join only their org's groups."""

websocket_urlpatterns: list = []
