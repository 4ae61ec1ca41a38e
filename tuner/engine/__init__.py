"""The Keras Tuner side of a search: flower-tuner's tuner and oracle classes
and the small stateful pieces they use (checkpoints, leases, heartbeat,
callbacks), laid out like Keras Tuner's own `engine/`.

Kept empty so that importing a light module here (progress, project,
leases) does not pull in TensorFlow; `tuner.engine.tuner` does.
"""
