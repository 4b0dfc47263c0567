"""PPX, the FlatBuffers protocol between PyProb-style inference engines and simulators.

The schema is ``csrc/transport/ppx/ppx.fbs``; ``_generated`` holds the Python code flatc
generates from it (do not edit; ``tests/test_ppx_schema.py`` checks it is current).
``ppfast.ppx.messages`` encodes and decodes messages in pure Python, for tests and
tooling; the engine's own PPX client is C++.

This package imports nothing from the rest of ppfast (in particular not the compiled
extension), so it works before and without a native build.
"""

__all__ = ["GENERATED_WITH_FLATC", "messages"]

#: The flatc release that generated ``_generated`` (other releases format it differently).
GENERATED_WITH_FLATC = "2.0.8"
