"""Builds the C extensions (cffi API mode); all other metadata is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["proto/_framer_build.py:ffibuilder"])
