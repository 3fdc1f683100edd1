"""edgebatch's Hydra configs, shipped inside the package as data: ``experiments.run`` reads them as ``pkg://conf``.

A folder of one's own (the same groups: ``policy/batching/my_policy.yaml``)
joins them with ``--config-dir DIR`` or ``hydra.searchpath=[file://DIR]``.
"""
