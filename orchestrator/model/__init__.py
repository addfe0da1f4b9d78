"""What a cluster file may say: the pydantic models of its hosts, cases, defaults and launcher sections, and
the checks of its fields. Reading a file into them is ``config``'s job."""
