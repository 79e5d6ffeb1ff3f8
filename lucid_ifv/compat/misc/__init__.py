"""Lucid's ``lucid.misc`` helpers (``from lucid_ifv.compat.misc.io import show, load, save``)."""
