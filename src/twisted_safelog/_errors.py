"""
The one exception a user of twisted-safelog is meant to see.
"""

from __future__ import annotations

__all__ = ["ConfigurationError"]


class ConfigurationError(ValueError):
    """
    A setting that can never work. Its message is one line that says which
    setting is wrong and what it accepts.
    """
