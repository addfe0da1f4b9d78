"""The cluster file: read within bounds, checked field by field, paths resolved, runner knobs checked."""
