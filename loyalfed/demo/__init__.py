"""The end-to-end demo: a pipeline of stages over the Complete Journey federation."""

from loyalfed.demo.pipeline import DemoContext, Stage, run_demo

__all__ = ["DemoContext", "Stage", "run_demo"]
