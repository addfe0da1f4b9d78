"""Preparing and checking a host: its workdir, facts, images, MPS, the device monitor, doctor."""
