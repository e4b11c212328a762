"""Loyalty's background jobs: the user-events consumer, the sweeper, the resync command."""
