"""The data side of the mix: quality tiers of a source, bounds on groups of domains, and the
near-duplicate audit.

- `tiers`: scores per document (a data field, or the built-in reference-corpus classifier) and
  the cuts that split a source into tiers, each a domain `source.tier`.
- `groups`: the config's group bounds resolved to domain names, for the design and the solver.
- `dedup` and `audit`: MinHash LSH near-duplicates within and across domains and tiers, and
  what per-domain and global deduplication would remove.
"""

from automixer.curation.groups import group_specs, group_totals

__all__ = ["group_specs", "group_totals"]
