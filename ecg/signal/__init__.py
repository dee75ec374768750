"""ECG signal processing: conditioning, quality, QRS detection, beats, delineation, measurements.

Pure functions over numpy arrays (leads x samples, millivolts); records and
file formats stay at the edge (``ecg.analysis``).
"""
