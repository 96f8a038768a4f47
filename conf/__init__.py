"""attnlab's Hydra configs (installed as the package attnlab.conf).

Importing it registers attnlab's schemas, resolver and sweeper with Hydra: Hydra imports
this package to read any config of it, so whoever composes attnlab's config (the CLI, the
Python API, Hydra's compose API or Hydra.multirun() in a notebook or Hydra's test suites)
finds hydra/sweeper=attnlab. Hydra's own plugin walk misses the sweeper under an editable
install (setuptools maps hydra_plugins/ there through an import hook the walk cannot list).
"""

from attnlab.hydra_setup import register

register()
