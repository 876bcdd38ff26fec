"""Where the build's bytes live: a local directory (``local``) or a prefix in an object store (``remote``, over
``remote_dir``), and the claim files that hand shards out to processes (``claims``)."""
