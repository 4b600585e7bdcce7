import os

# Tests run on the CPU, quietly, in the fast profile, without the network.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_PROFILE", "fast")
os.environ.setdefault("COURSE_DATA", "offline")
