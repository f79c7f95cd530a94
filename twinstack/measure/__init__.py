"""``twinstack measure``: boot time, memory, disk and idle CPU per instance, VM vs container,
measured on this host against real dockerd and libvirtd, with bare baselines; writes a
report and a calibration file for ``twinstack diff --calibration`` (docs/measure.md)."""
