"""Leaf helpers every layer may use: JSON and file I/O, CTR metrics, the checkpoint format.

Nothing here imports another recsys package, so ``data`` (at the bottom) and ``cli`` (at the
top) can both depend on it without cycles.
"""
