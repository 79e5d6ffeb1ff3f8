"""``lucid.misc.tfutil``: ``create_session`` belongs to TF1 session code, out of scope here."""


def create_session(*args, **kwargs):
    """Lucid's TF1 session helper. TF2 has no session: run the code eagerly or in a
    `tf.function` (docs/lucid-parity.md lists the session-only parts of Lucid)."""
    raise NotImplementedError("create_session: TF1 sessions are not supported in TF2; see docs/lucid-parity.md")
