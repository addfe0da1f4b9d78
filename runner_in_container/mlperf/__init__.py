"""MLPerf's scenarios (Offline, Server, SingleStream, MultiStream) run by LoadGen over the infer toolkit's
compiled model, after the case's val and infer passes (metrics.md, "Scenarios (MLPerf LoadGen)").

``settings`` (what a run asks of LoadGen, standard library only), ``logs`` (LoadGen's logs read back, standard
library only), ``search`` (the Server QPS search), ``sut`` (the query sample library and the system under test
over any toolkit's forward call) and ``scenario`` (the runs, and the result's ``mlperf`` section). Only
``scenario`` and ``sut`` import LoadGen (``mlperf_loadgen``, from the ``mlcommons-loadgen`` package), and only
for a LoadGen scenario.
"""
