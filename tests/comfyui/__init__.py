"""Test harness for the ComfyUI node pack: a real ComfyUI installed from PyPI, a real server,
the real frontend in headless Chromium."""
