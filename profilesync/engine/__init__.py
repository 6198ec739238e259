"""The sync engine: :mod:`.sync` (the sync path), :mod:`.transform` (map, validate, compact),
:mod:`.quota`, :mod:`.checks` (Test mapping), :mod:`.locks` (one sync per source)."""
