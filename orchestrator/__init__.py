"""Control side: plans, fans out, collects and reports benchmark jobs. Never imports torch."""
