"""GPT-SoVITS v2 inference in plain PyTorch (no Django): strict-loads the official checkpoints.

Written here rather than imported because the official code is a web-UI application, not a library: global
state, no lock, serial requests and memory growth. Checkpoint key names match the official ones so trained
voices load unchanged.
"""
