"""Array-level numerical engines of scmix. Nothing in here knows about AnnData."""
