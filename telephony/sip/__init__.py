"""Herald's SIP user agent client: pure asyncio, no Django. See ua.place_call."""
