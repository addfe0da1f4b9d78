"""A run: fanning jobs out over the hosts, one orchestrator per run, signals, the live display."""
