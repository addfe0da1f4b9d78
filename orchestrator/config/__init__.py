"""Reading a cluster file (``host_configs/*.yaml``): within bounds (``yamlread``), into the models
(``model``), its paths resolved (``paths``), then checked against this installation: its launchers, vendors
and the runner's knobs (``knobs``). Every command calls ``load.load_checked``."""
