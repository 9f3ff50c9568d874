"""Talking to a model: a chat in the terminal, and (to come) an HTTP server and its page."""
