"""A job's life: the plan that makes it, its command and container, the runner's output, its result."""
