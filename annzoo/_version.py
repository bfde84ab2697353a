"""annzoo's version: one place, below every module that records it (run results,
export metadata) and read by ``setup.cfg``."""

__version__ = "0.1.0"
