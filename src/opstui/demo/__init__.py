"""`opstui demo`: a small real world to watch (see `world.DemoWorld`)."""

from opstui.demo.world import DemoWorld

__all__ = ["DemoWorld"]
