"""``lucid.misc.io.loading``: `load` (see `lucid_ifv.compat.misc.io`)."""

from lucid_ifv.compat.misc.io import load  # noqa: F401
