"""Benches: the measurements behind the README's figures, run by hand on the hosts they name.

Each is a module run from the repo root, e.g. ``python -m bench.h200_bench --dest results/bench_h200``
(``--help`` gives its arguments, the module's docstring what it measures and where to run it):

- ``h200_bench``: issue 5's table on one NVIDIA GPU, every data and compute path side by side
  (``make bench``);
- ``gpu_product``: the product path, ``python -m orchestrator run`` row by row on one NVIDIA GPU;
- ``decode_contention``: JPEG decoding on the GPU beside the model (with ``nvjpeg_hw``, nvJPEG's hardware
  backend through ctypes);
- ``loader_profile``: where the device loader's time goes, part by part;
- ``loader_kernels``: one decoding process's GPU time by kernel (torch.profiler), for each resize;
- ``stream_latency``: the latency floor of one small query (the model, its top-1, LoadGen's SingleStream);
- ``real_accuracy``: the fast paths' accuracy with real weights on real images;
- ``fanout``: what one more SSH host costs the orchestrator (as root; hosts from ``sshlab``, which the
  tests' sshd fixtures use too);
- ``spawn_ahead``: the decoding processes spawned before or after the runner's imports, side by side;
- ``gpu_docker.sh`` (with ``docker_engine.sh`` and ``base_from_env.sh``): bare and docker rows of
  ``gpu_product`` side by side on a GPU host that has no docker;
- ``h200_spine.sh``: the orchestrator end to end on the H200, runtime bare (``make bench-spine``).

The GPU benches import torch; the orchestrator, the vendors and the runner never import ``bench``.
"""
