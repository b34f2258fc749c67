"""Reporters: render stored results for people (terminal) and machines (JSON)."""
