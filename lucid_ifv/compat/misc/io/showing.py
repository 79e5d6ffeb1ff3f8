"""``lucid.misc.io.showing``: `show`, `image`, `images` and Lucid's private helpers
``_image_url`` / ``_display_html`` (see `lucid_ifv.compat.misc.io`)."""

from lucid_ifv.compat.misc.io import display_html as _display_html  # noqa: F401
from lucid_ifv.compat.misc.io import image_url as _image_url  # noqa: F401
from lucid_ifv.compat.misc.io import show


def image(array, domain=(0, 1), w=None, format="png", **kwargs):  # noqa: A002 (Lucid's keyword)
    """Show one image (Lucid's ``showing.image``)."""
    return show(array, domain=domain, w=w)


def images(arrays, labels=None, domain=(0, 1), w=None):
    """Show several images side by side with labels (Lucid's ``showing.images``)."""
    return show(list(arrays), domain=domain, w=w, labels=labels)
