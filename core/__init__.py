"""Typed records, codes, configuration and errors shared by every mmdx stage.

``core`` is the bottom layer: it performs no I/O, imports no stage and holds no
pydicom ``Dataset``.  Stages exchange the frozen records defined here.
"""
