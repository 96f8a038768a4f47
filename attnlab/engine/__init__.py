"""The experiment without Hydra: typed configs, data, replica layers and models, training,
metrics, memory bounds and interval estimates. Imports nothing from attnlab.runs or
attnlab.sweep; TensorFlow loads only in the modules that train (layers, models, train)."""
