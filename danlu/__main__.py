from danlu.cli import run

run()
