"""attnlab's sweeper plugin (Hydra finds sweepers only under hydra_plugins)."""
