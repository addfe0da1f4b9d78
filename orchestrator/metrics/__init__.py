"""The figures of a run, declared once: the metric table (``table``) that every report, compare, chart and
bench iterates, and the typed record of a job's derived figures (``derived``) that ``collect`` returns."""
