"""``lucid.misc.io.reading``: `read` (see `lucid_ifv.compat.misc.io`)."""

from lucid_ifv.compat.misc.io import read  # noqa: F401
