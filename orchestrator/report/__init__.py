"""Tables and renderings of stored runs."""
