"""turret-stream: self-hosted, real-time semantic analytics for AI products."""

__version__ = "0.1.0"

__all__ = ["__version__"]
