"""Pieces more than one process needs: settings, logging, errors, gRPC wiring, migrations."""
