"""edgequant's version, in a module of its own: the modules that record it never import the package root."""

__version__ = "0.1.0"
