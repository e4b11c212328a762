"""`make drills`: dependency losses and a replica's death, against the real processes."""
