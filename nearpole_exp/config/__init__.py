"""The configuration: typed schemas of the loop's own groups (:mod:`.schemas`), the schemas of
every component option found from its class and registered in Hydra's ConfigStore
(:mod:`.discovery`), and the range checks run right after composition (:mod:`.validate`).

Each YAML option lists its schema (``base_<option>``) first in its defaults, so a wrong type or
an unknown key fails while Hydra composes the config; ranges are checked before anything is built.
"""
