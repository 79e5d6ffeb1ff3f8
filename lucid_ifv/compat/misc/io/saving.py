"""``lucid.misc.io.saving``: `save` (see `lucid_ifv.compat.misc.io`)."""

from lucid_ifv.compat.misc.io import save  # noqa: F401
