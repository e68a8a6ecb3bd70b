"""Where videos come from: the built-in gameplay renderer (gameplay.py) and the course's HDF5 video format (hdf5.py)."""
