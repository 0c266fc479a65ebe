"""takhin-ws: real-time WebSocket push of Takhin cluster metrics and change events, on Trio."""
