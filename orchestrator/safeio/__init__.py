"""Reading and showing what others wrote, within bounds: files and JSON, terminal text, ids, log files."""
