"""Training: the loop (loop.py), its hooks (hooks.py), the standard callbacks, optimizers and schedules,
and the plug-ins that are callbacks or steps: privacy, distributed, lookahead, distillation, tracking."""
