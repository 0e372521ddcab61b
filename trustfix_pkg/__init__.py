"""trustfix: code refinement that learns from its reviewers, and how far to trust each of them."""

__version__ = "0.1.0"
