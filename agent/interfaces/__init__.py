"""What people and programs talk to: the HTTP/WebSocket layer (`web`) and the CLI."""
