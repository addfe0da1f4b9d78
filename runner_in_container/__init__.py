"""Runs one benchmark case inside a vendor container (Python >= 3.8, torch >= 1.13)."""
