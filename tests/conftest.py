import os
import signal

# Tests run on the CPU, quietly, in the fast profile, without the network.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_PROFILE", "fast")
os.environ.setdefault("COURSE_DATA", "offline")

# Three tests press Ctrl-C during a download (_thread.interrupt_main), which raises
# KeyboardInterrupt only through Python's own SIGINT handler. Python does not install it when
# it starts with SIGINT ignored, as a job that a script starts with `&` does; install it then.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
