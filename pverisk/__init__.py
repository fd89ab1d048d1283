"""pverisk: the command-line entry point over feature_store, training and serving.

It lives in its own small package because it is the only layer allowed to call all
three (serving must never import training, and vice versa).
"""
