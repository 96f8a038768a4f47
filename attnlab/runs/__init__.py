"""A run's and a sweep dir's files and what is computed from them: write-once records, the
report and summary, figures (plot data pure, renderers thin), TensorBoard event files.
Imports attnlab.engine only; loads neither Hydra nor TensorFlow."""
