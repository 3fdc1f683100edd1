"""edgebatch's Hydra plugins: Hydra instantiates plugins only from the ``hydra_plugins`` package.

``CheckedSweeper`` (``conf/hydra/sweeper/checked.yaml``) is ``experiments.sweeper.CheckedSweeper``.
``experiments.run`` makes this package importable and registers the class
even where the working folder is not the repository root.
"""

import experiments.sweeper as _sweeper  # the module, not its class: Hydra's scan lists every plugin class in here

__all__ = ["CheckedSweeper"]


class CheckedSweeper(_sweeper.CheckedSweeper):
    __doc__ = _sweeper.CheckedSweeper.__doc__
