"""weightaudit: audit open model-weight releases without executing anything from them."""

__version__ = "0.1.0"
__all__ = ["__version__"]
