"""Model kinds other than Python ``ppfast.Model``: embedded C++, shared memory, PPX."""
