"""The run folder: its one writer and lifecycle (folder.py, lifecycle.py), atomic files (files.py), where
runs live and how they are listed (store.py), training checkpoints and side-by-side comparison."""
