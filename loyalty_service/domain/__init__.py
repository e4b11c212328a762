"""Loyalty's rules: pure functions and frozen dataclasses, no I/O, no protobuf."""
