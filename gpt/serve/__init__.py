"""Talking to a model: a chat in the terminal (chat.py), and an OpenAI-compatible server with a page (server.py)."""
