"""Hydra's side: config schemas, cell identity and naming, stop signals, the planner that
runs in the sweep's parent process, the jobs that run in a launcher's worker, packing,
launchers, progress lines and the end-of-sweep callback. Imports attnlab.runs and
attnlab.engine, never the entry points above it."""
