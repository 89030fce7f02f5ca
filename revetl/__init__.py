"""revetl: warehouse-native reverse ETL and audience builder."""

__all__ = ["__version__"]

__version__ = "0.1.0"
