"""``lucid.scratch.web``: ``svelte`` (Svelte HTML widgets)."""
